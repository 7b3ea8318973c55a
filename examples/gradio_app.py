"""Chat with a video in the browser: the `hour-llava app` page as a script, runnable as a Hugging Face Space's app.py.

    python examples/gradio_app.py                                    # the model `hour-llava demo` saved
    HOUR_LLAVA_MODEL=path/or/hub-id python examples/gradio_app.py    # any Hour-LLaVA checkpoint

Then open http://127.0.0.1:7860. As a Space (SDK: gradio), copy this file as `app.py` next to a `requirements.txt`
that holds `hour-llava[app]`, and set HOUR_LLAVA_MODEL in the Space's variables. Spaces set GRADIO_SERVER_NAME to
0.0.0.0, which this script follows; anywhere else it binds to 127.0.0.1 only.
"""

import os

from hour_llava.app import VideoChat, model_and_examples
from hour_llava.app.ui import launch_app


def main() -> None:
    model, examples = model_and_examples(os.environ.get("HOUR_LLAVA_MODEL"))
    chat = VideoChat.from_pretrained(model)
    launch_app(
        chat,
        examples,
        host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        model_name=model,
    )


if __name__ == "__main__":
    main()
