# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""The Gradio page of `hour-llava app`: upload a video (or pick an example), chat about it, see where MemAug looked.

`ChatApp` holds the event handlers (plain functions of the components' values, tested without a browser);
`build_app` lays out the page and wires them; `launch_app` serves it on 127.0.0.1 by default, with Gradio's
analytics, version check, share links and server-side rendering off, so nothing leaves the machine.
"""

import html
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from .chat import Answer, AnswerTimings, ChatVideo, Turn, VideoChat, VideoInputError, format_bytes
from .demo_model import Example
from .timeline import NO_MEMAUG, render_timeline


logger = logging.getLogger(__name__)

TITLE = "Hour-LLaVA: chat with your video"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
INTRO = (
    "Upload a video or pick an example, then ask questions about it. The first question decodes and encodes the "
    "video (SigLIP, one frame per second); later ones reuse its cached features. Under each answer: where MemAug's "
    "cross-attention went on the video's timeline, the frames it looked at most, and the frames forgetting kept for "
    "the language model."
)
CSS = "#timings table { font-size: 0.85em; } #video-status p { margin: 0.25em 0; }"


@dataclass
class ChatApp:
    """The page's event handlers over one `VideoChat`.

    Per-browser state lives in Gradio `State`s: the current video's path and the finished answers about it (their
    text and timings; not the video, which the shared feature cache owns).
    """

    chat: VideoChat

    def on_video(self, video: str | None):
        """A new video (upload or example): check it and start a new chat. Returns
        `(video_path, answers, chatbot, timings, plot, status)`."""
        if not video:
            return None, [], [], "", None, ""
        try:
            path = self.chat.check_video(video)
        except VideoInputError as error:
            return None, [], [], "", None, warning(str(error))
        name = html.escape(Path(path).name)
        return path, [], [], "", None, f"**{name}** is ready: ask a question."

    def on_question(
        self, question: str, video: str | None, answers: list[Answer], progress=gr.Progress()
    ) -> Iterator[tuple]:
        """Stream the answer to `question`. Yields `(chatbot, timings, plot, answers, question box, status)`."""
        answers = list(answers or [])
        if not video:
            yield gr.skip(), gr.skip(), gr.skip(), answers, gr.skip(), warning("Upload a video or pick an example first.")
            return
        if not (question or "").strip():
            yield gr.skip(), gr.skip(), gr.skip(), answers, gr.skip(), warning("Type a question first.")
            return

        def report_progress(frames: int) -> None:
            progress((frames, None), desc="Decoding and encoding the video", unit="frames")

        history = [Turn(answer.question, answer.text) for answer in answers]
        try:
            for answer in self.chat.ask(video, question, history, report_progress):
                shown = answers + [answer]
                if not answer.done:
                    yield chat_messages(shown), gr.skip(), gr.skip(), answers, "", gr.skip()
                    continue
                plot = attention_plot(answer, len(shown))
                finished = answers + [Answer(answer.question, answer.text, answer.timings, done=True)]
                yield chat_messages(shown), timings_table(finished), plot, finished, "", status_line(answer)
        except VideoInputError as error:
            yield gr.skip(), gr.skip(), gr.skip(), answers, gr.skip(), warning(str(error))
        except ValueError as error:  # e.g. a chat longer than the model's context
            yield gr.skip(), gr.skip(), gr.skip(), answers, gr.skip(), warning(f"Could not answer: {error}")


# ----------------------------------------------------------------------------------------------------------------------
# What the page shows
# ----------------------------------------------------------------------------------------------------------------------
def warning(message: str) -> str:
    return f"⚠️ {html.escape(message)}"


def chat_messages(answers: Sequence[Answer]) -> list[dict]:
    """The chatbot's messages; an answer still waiting for its first words shows an ellipsis, an answer that ended
    without any (the model closed its turn at once) says so."""
    messages = []
    for answer in answers:
        shown = answer.text.strip() or ("(the model gave an empty answer)" if answer.done else "…")
        messages.append({"role": "user", "content": answer.question})
        messages.append({"role": "assistant", "content": shown})
    return messages


def video_cell(timings: AnswerTimings) -> str:
    video = timings.video
    if video.from_cache:
        return f"from the cache: {milliseconds(video.seconds)}"
    return f"decoded + encoded {video.num_frames} frames: {seconds(video.seconds)}"


def answer_cell(timings: AnswerTimings) -> str:
    first = f", first after {seconds(timings.first_token_seconds)}" if timings.first_token_seconds is not None else ""
    tokens = "1 token" if timings.num_tokens == 1 else f"{timings.num_tokens} tokens"
    return f"{tokens} in {seconds(timings.answer_seconds)}{first}"


def timings_table(answers: Sequence[Answer]) -> str:
    """Markdown table of every answer about the current video: where its features came from and how long each
    step took (the first question pays for decoding and encoding; later ones read the cache)."""
    rows = [
        "| # | question | video features | answer | attention pass |",
        "|---|---|---|---|---|",
    ]
    for number, answer in enumerate(answers, start=1):
        timings = answer.timings
        question = html.escape(answer.question).replace("|", "\\|")
        rows.append(
            f"| {number} | {question} | {video_cell(timings)} | {answer_cell(timings)} | "
            f"{seconds(timings.attention_seconds)} |"
        )
    return "\n".join(rows)


def status_line(answer: Answer) -> str:
    timeline = answer.timeline
    if timeline is None or not timeline.has_attention:
        return timeline.note if timeline is not None and timeline.note else NO_MEMAUG
    peak = timeline.peak_second()
    share = 100 * float(timeline.attention[timeline.top_frames[0]])
    return (
        f"MemAug looked most at {peak:.0f} s ({share:.1f}% of its cross-attention); forgetting kept "
        f"{len(timeline.kept_frames)} of {len(timeline.timestamps)} frames."
    )


def attention_plot(answer: Answer, number: int):
    if answer.timeline is None:
        return None
    thumbnails = answer.video.thumbnails if isinstance(answer.video, ChatVideo) else None
    question = answer.question if len(answer.question) <= 60 else answer.question[:57] + "..."
    return render_timeline(answer.timeline, thumbnails, title=f"Answer {number}: \u201c{question}\u201d")


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def milliseconds(value: float) -> str:
    return f"{1000 * value:.1f} ms"


# ----------------------------------------------------------------------------------------------------------------------
# Page and server
# ----------------------------------------------------------------------------------------------------------------------
def build_app(chat: VideoChat, examples: Sequence[Example] = (), model_name: str = "") -> gr.Blocks:
    """The page, wired to a `ChatApp` over `chat`."""
    handlers = ChatApp(chat)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        video_path = gr.State(None)
        answers = gr.State([])
        subtitle = f" Model: `{model_name}`." if model_name else ""
        gr.Markdown(f"# {TITLE}\n{INTRO}{subtitle}")
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(label="Video", sources=["upload"], elem_id="video", height=260)
                status = gr.Markdown(elem_id="video-status")
                limit = f"Videos up to {format_bytes(chat.max_video_bytes)}." if chat.max_video_bytes else ""
                gr.Markdown(limit, elem_id="upload-limit")
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Chat", elem_id="chat", height=300, feedback_options=None)
                with gr.Row():
                    question = gr.Textbox(
                        show_label=False, placeholder="Ask about the video", elem_id="question", scale=5
                    )
                    ask = gr.Button("Ask", variant="primary", elem_id="ask", scale=1)
                timings = gr.Markdown(elem_id="timings")
        if examples:
            gr.Examples(
                examples=[[str(example.video), example.question] for example in examples],
                inputs=[video, question],
                label="Held-out videos of the demo run",
            )
        plot = gr.Image(
            label="Where MemAug looked (last answer)", elem_id="attention-plot", type="pil", interactive=False
        )

        video.change(
            handlers.on_video, [video], [video_path, answers, chatbot, timings, plot, status], show_progress="hidden"
        )
        outputs = [chatbot, timings, plot, answers, question, status]
        ask.click(handlers.on_question, [question, video_path, answers], outputs)
        question.submit(handlers.on_question, [question, video_path, answers], outputs)
    return app


def launch_app(
    chat: VideoChat,
    examples: Sequence[Example] = (),
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    model_name: str = "",
    prevent_thread_lock: bool = False,
    quiet: bool = False,
):
    """Serve the app. Only `host` (127.0.0.1 by default) reaches it; Gradio sends nothing anywhere."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # Gradio's launch-time telemetry reads the variable
    app = build_app(chat, examples, model_name)
    app.queue(default_concurrency_limit=1)  # one question at a time: the model is shared
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        max_file_size=chat.max_video_bytes,
        allowed_paths=sorted({str(example.video.parent.resolve()) for example in examples}),
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
        show_error=True,
        footer_links=[],
        css=CSS,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
    )
    return app


__all__ = ["ChatApp", "build_app", "launch_app", "timings_table"]
