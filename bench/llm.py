"""A zero-latency scripted LLM for the chat benchmark: tests/fake_llm.py in its own process.

The scripted turn asks for `get_products`, then answers with an empty text, so the fake server
never sleeps (it pauses only between streamed text chunks); the page's turn answers with one
chunk of Markdown, with no pause. Started by bench/procs.py from the
repo root as `python -m bench.llm --port N`; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import threading

from tests.fake_llm import Calls, FakeLLM, Reply

MESSAGE = "bench: what do you sell?"
# The page rows' turn (bench/page.py): the same tool call, then a short Markdown reply.
PAGE_MESSAGE = "bench page: what do you sell?"
PAGE_REPLY = "We sell **4 products**; the *Smart Watch Pro* is the favourite.\n\n- free delivery"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    llm = FakeLLM(port=a.port)
    llm.script(MESSAGE, Calls(("get_products", {})), Reply(""))
    llm.script(PAGE_MESSAGE, Calls(("get_products", {})), Reply(PAGE_REPLY, chunks=1, delay=0))
    # Bounded memory: the fake records every request; the bench only needs the latest few.
    llm.requests = _Last(100)  # type: ignore[assignment]
    llm.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"fake LLM on {llm.base_url}", flush=True)
    done.wait()
    llm.stop()


class _Last(list):  # type: ignore[type-arg]
    """A list that keeps only its last `n` items."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def append(self, item: object) -> None:
        super().append(item)
        if len(self) > self.n:
            del self[0]


if __name__ == "__main__":
    main()
