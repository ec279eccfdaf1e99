"""scribe-runner's whisper worker: transcribes audio files with faster-whisper.

scribe-runner (the Rust daemon) starts this script with the Python of the runner's
environment (scripts/runner-env) and talks to it over stdin/stdout, one JSON object per
line. The protocol is described in PROTOCOL.md next to this file. The daemon stays in
charge: it picks the model directory, maps the job settings to faster-whisper's options,
renders the five transcript formats from the segments this worker streams back, and
kills this process (its whole process group) to abort a job.

Nothing here downloads anything: models are local directories, and the daemon sets
HF_HUB_OFFLINE=1 as a second guard.
"""

import gc
import json
import os
import platform
import sys
import threading
import time
import traceback

PROTOCOL = 1

# The protocol owns the real stdout. Anything else that prints (a library's progress
# output, a stray print) lands on stderr, which the daemon logs.
_protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
sys.stdout = sys.stderr


def send(message):
    _protocol_out.write(json.dumps(message, ensure_ascii=False, allow_nan=False) + "\n")
    _protocol_out.flush()


def log(text):
    print("whisper worker: " + text, file=sys.stderr, flush=True)


class JobError(Exception):
    """A failure of one request that leaves the worker healthy; the message is for users."""


try:
    import ctranslate2
    import faster_whisper
    import numpy as np
    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio
    from faster_whisper.tokenizer import Tokenizer
except Exception as error:  # noqa: BLE001 - any import failure means a broken environment
    send(
        {
            "type": "fatal",
            "message": f"{sys.executable} cannot import faster-whisper ({type(error).__name__}: "
            f"{error}); create the runner's Python environment with scripts/runner-env",
        }
    )
    sys.exit(3)


class Models:
    """Keeps the most recently used model loaded: consecutive jobs rarely switch models,
    and loading a large one takes seconds."""

    def __init__(self):
        self.key = None
        self.model = None

    def get(self, spec):
        key = (
            spec["path"],
            spec.get("device", "cpu"),
            spec.get("compute_type", "int8"),
            int(spec.get("cpu_threads", 0)),
        )
        if self.key == key:
            return self.model, 0.0, True
        self.key = None
        self.model = None
        gc.collect()
        path = spec["path"]
        if not os.path.isfile(os.path.join(path, "model.bin")):
            raise JobError(
                f"model {spec.get('name', '?')!r}: {path} holds no CTranslate2 model (no model.bin)"
            )
        started = time.monotonic()
        try:
            model = WhisperModel(
                path,
                device=key[1],
                compute_type=key[2],
                cpu_threads=key[3],
                local_files_only=True,
            )
        except Exception as error:  # noqa: BLE001 - reported to the job
            raise JobError(
                f"could not load model {spec.get('name', '?')!r} from {path}: "
                f"{type(error).__name__}: {error}"
            ) from error
        self.key, self.model = key, model
        return model, time.monotonic() - started, False


def decode(path):
    try:
        audio = decode_audio(path, sampling_rate=16000)
    except Exception as error:  # noqa: BLE001 - PyAV raises many kinds
        # PyAV's errors carry the temporary path and an errno; users need the reason.
        text = getattr(error, "strerror", None) or str(error) or type(error).__name__
        if isinstance(error, (IndexError, StopIteration)):
            text = "the file has no audio stream"
        raise JobError(f"could not decode the audio: {text}") from error
    return audio


def numeral_tokens(tokenizer):
    """Tokens that spell digits or currency/percent signs: whisperx's suppress_numerals."""
    found = []
    for token in range(tokenizer.eot):
        text = tokenizer.decode([token]).removeprefix(" ")
        if any(c in "0123456789%$£" for c in text):
            found.append(token)
    return found


def transcribe(request, models):
    rid = request.get("id")
    model, load_seconds, cached = models.get(request["model"])
    multilingual = bool(model.model.is_multilingual)
    send(
        {
            "id": rid,
            "type": "loaded",
            "seconds": round(load_seconds, 3),
            "cached": cached,
            "multilingual": multilingual,
        }
    )

    options = dict(request.get("options") or {})
    task = options.get("task", "transcribe")
    language = options.get("language")
    name = request["model"].get("name", "?")
    if not multilingual:
        # faster-whisper would quietly transcribe English instead.
        if task == "translate":
            raise JobError(
                f"model {name!r} is English-only and cannot translate; "
                "use a multilingual model for task 'translate'"
            )
        if language not in (None, "en"):
            raise JobError(
                f"model {name!r} is English-only and cannot transcribe language {language!r}"
            )

    if request.get("suppress_numerals"):
        tokenizer = Tokenizer(
            model.hf_tokenizer, multilingual, task=task, language=language or "en"
        )
        suppress = list(options.get("suppress_tokens") or [])
        options["suppress_tokens"] = sorted(set(suppress + numeral_tokens(tokenizer)))

    audio = decode(request["audio"])
    duration = len(audio) / 16000.0
    started = time.monotonic()
    try:
        segments, info = model.transcribe(audio, **options)
    except Exception as error:  # noqa: BLE001 - reported to the job
        raise JobError(f"transcription failed: {type(error).__name__}: {error}") from error
    send(
        {
            "id": rid,
            "type": "started",
            "duration": duration,
            "language": info.language,
            "language_probability": round(float(info.language_probability), 4),
        }
    )
    count = 0
    try:
        for segment in segments:
            message = {
                "id": rid,
                "type": "segment",
                "start": float(segment.start),
                "end": float(segment.end),
                "text": segment.text,
            }
            if segment.words is not None:
                message["words"] = [
                    {
                        "word": word.word,
                        "start": float(word.start),
                        "end": float(word.end),
                        "probability": float(word.probability),
                    }
                    for word in segment.words
                ]
            send(message)
            count += 1
    except Exception as error:  # noqa: BLE001 - reported to the job
        raise JobError(f"transcription failed: {type(error).__name__}: {error}") from error
    send(
        {
            "id": rid,
            "type": "done",
            "duration": duration,
            "language": info.language,
            "segments": count,
            "seconds": round(time.monotonic() - started, 3),
        }
    )


def check(request, models):
    """Loads the model and transcribes a second of silence through the VAD filter."""
    rid = request.get("id")
    model, load_seconds, _ = models.get(request["model"])
    segments, _ = model.transcribe(
        np.zeros(16000, dtype=np.float32), language="en", vad_filter=True
    )
    list(segments)
    send(
        {
            "id": rid,
            "type": "checked",
            "seconds": round(load_seconds, 3),
            "multilingual": bool(model.model.is_multilingual),
            "n_mels": int(model.model.n_mels),
        }
    )


def exit_with_parent():
    """The daemon kills this worker's process group to abort a job; if the daemon itself
    dies (SIGKILL, a crash), nothing would, so leave when our parent changes."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(4)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main():
    exit_with_parent()
    send(
        {
            "type": "ready",
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "python": platform.python_version(),
            "faster_whisper": faster_whisper.__version__,
            "ctranslate2": ctranslate2.__version__,
            "cuda_devices": ctranslate2.get_cuda_device_count(),
        }
    )
    models = Models()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        rid = None
        try:
            request = json.loads(line)
            rid = request.get("id")
            kind = request.get("type")
            if kind == "transcribe":
                transcribe(request, models)
            elif kind == "check":
                check(request, models)
            else:
                raise JobError(f"unknown request type {kind!r}")
        except JobError as error:
            send({"id": rid, "type": "error", "message": str(error)})
        except Exception as error:  # noqa: BLE001 - keep serving; the daemon fails the job
            traceback.print_exc()
            send(
                {
                    "id": rid,
                    "type": "error",
                    "message": f"the whisper worker failed: {type(error).__name__}: {error}",
                }
            )


if __name__ == "__main__":
    main()
