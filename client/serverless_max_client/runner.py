"""The run: inputs streamed into a bounded queue, workers sending them under the AIMD limit with
retries, every input's outcome one line in the results file."""

import asyncio
import dataclasses
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

from .concurrency import Limiter
from .inputs import Input, id_hash, read_text
from .payloads import build_request, is_json, output_name, split_answer
from .platforms import FAIL, OK, THROTTLED, TRANSIENT, Verdict, classify, message_of, request_id
from .results import ResultsWriter, save_binary
from .spec import LIST, RequestShape
from .stats import Stats
from .transport import Answer, SendError

BACKOFF_BASE = 0.25
BACKOFF_CAP = 20.0
END = object()  # the last item of the queue of jobs


@dataclass
class Settings:
    jobs: int = 64
    retries: int = 8
    batch_size: int = 1
    output_dir: Optional[str] = None
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP


@dataclass
class Job:
    items: List[Input]
    attempt_log: List[List[Any]] = field(default_factory=list)


class Runner(object):
    def __init__(self, shape: RequestShape, transport: Any, writer: ResultsWriter, settings: Settings):
        self.shape = shape
        self.transport = transport
        self.writer = writer
        self.settings = settings
        self.limiter = Limiter(settings.jobs)
        self.stats = Stats()
        self.stopping = False

    # ------------------------------------------------------------------ the inputs

    def _jobs(self, inputs: Iterator[Input]) -> Iterator[Job]:
        size = self.settings.batch_size if self.shape.kind == LIST else 1
        batch: List[Input] = []
        for item in inputs:
            if self.writer.is_done(item.id):
                self.stats.skipped += 1
                continue
            batch.append(item)
            if len(batch) == size:
                yield Job(batch)
                batch = []
        if batch:
            yield Job(batch)

    def _read(self, inputs: Iterator[Input], queue: "asyncio.Queue[Any]", loop: asyncio.AbstractEventLoop,
              room: threading.Semaphore) -> None:
        """The inputs into the queue, then END. Walking directories and reading stdin may block: a daemon
        thread does it, so that a stalled stdin holds up neither the requests in flight nor Ctrl-C.
        `room` bounds the jobs waiting in the queue; handing each over with call_soon_threadsafe
        (not a coroutine awaited across threads) keeps the handover off the client's critical path."""
        try:
            for job in self._jobs(inputs):
                while not room.acquire(timeout=0.2):
                    if self.stopping:
                        return
                if self.stopping:
                    return
                loop.call_soon_threadsafe(queue.put_nowait, job)
            loop.call_soon_threadsafe(queue.put_nowait, END)
        except BaseException as error:  # a bad manifest line, a glob that matches nothing: the run's error
            if not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, error)
                except RuntimeError:  # the loop closed meanwhile: the run is over anyway
                    pass

    async def run(self, inputs: Iterator[Input]) -> Stats:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        room = threading.Semaphore(self.settings.jobs * 2)
        threading.Thread(target=self._read, args=(inputs, queue, asyncio.get_running_loop(), room), name="inputs",
                         daemon=True).start()
        workers = [asyncio.ensure_future(self._work(queue, room)) for _ in range(self.settings.jobs)]
        try:
            await asyncio.gather(*workers)
        finally:
            self.stopping = True
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.stats.finished = time.time()
        return self.stats

    async def _work(self, queue: "asyncio.Queue[Any]", room: threading.Semaphore) -> None:
        while True:
            job = await queue.get()
            if job is END:
                queue.put_nowait(END)  # for the next worker
                return
            if isinstance(job, BaseException):
                raise job
            room.release()
            await self._process(job)

    # ------------------------------------------------------------------ one request

    def _readable(self, job: Job) -> List[Input]:
        """The job's inputs that can be read; the others get their failed line now."""
        if self.shape.kind != LIST:
            return job.items
        readable = []
        for item in job.items:
            try:
                readable.append(dataclasses.replace(item, text=read_text(item)))
            except (OSError, ValueError) as error:
                self._fail([item], job, None, "unreadable input", _unreadable(item, error))
        return readable

    async def _process(self, job: Job) -> None:
        items = self._readable(job)
        if not items:
            return
        try:
            request = build_request(self.shape, items)
        except (OSError, ValueError) as read_error:
            self._fail(items, job, None, "unreadable input", _unreadable(items[0], read_error))
            return
        attempts = self.settings.retries + 1
        for attempt in range(1, attempts + 1):
            started = await self.limiter.acquire()
            answer: Optional[Answer] = None
            try:
                answer = await self.transport.send("POST", request.path, request.body, request.content_type)
                verdict = classify(answer.status, answer.headers, answer.body)
                outcome: Any = answer.status
                described = "HTTP %d" % answer.status
            except SendError as error:
                verdict = Verdict(TRANSIENT, None, str(error))
                outcome, described = error.kind, str(error)
            except BaseException:
                await self.limiter.release(started, throttled=False, succeeded=False)
                raise
            finished = time.time()
            await self.limiter.release(started, verdict.kind == THROTTLED, verdict.kind == OK, verdict.retry_after,
                                       verdict.allowed)
            job.attempt_log.append([round(started, 6), round(finished, 6), outcome])
            self.stats.attempts += 1
            self.stats.busy_seconds += finished - started
            if verdict.kind == THROTTLED:
                self.stats.throttled += 1
            if verdict.signal:
                self.stats.signals[verdict.signal] += 1
            if verdict.kind == OK:
                self._succeed(items, job, answer)
                return
            if verdict.kind == FAIL:
                assert answer is not None
                message = verdict.message or ""
                if len(items) > 1:  # which of them is at fault (or whether all together are too big) is unknown
                    message += ("; the %d inputs of this request failed together: --resume with a smaller "
                                "--batch-size (1 tells which input it is)" % len(items))
                self._fail(items, job, answer, "HTTP %d" % answer.status, message, answer.headers)
                return
            if attempt == attempts:
                last = described
                if answer is not None:
                    last += " (%s)" % message_of(answer.body, 200)
                kind = "gave up: " + ("HTTP %d" % answer.status if answer is not None else outcome)
                message = "no answer after %d attempts (--retries %d); the last: %s" % (
                    attempts, self.settings.retries, last)
                if answer is not None and answer.status == 202 and request_id(answer.headers):
                    message += ("; the action ran past the controller's wait every time: its result comes with "
                                "`wsk activation result %s`, or raise the action's timeout and --resume"
                                % request_id(answer.headers))
                self._fail(items, job, answer, kind, message, answer.headers if answer else None)
                return
            self.stats.retries += 1
            delay = random.uniform(0, min(self.settings.backoff_cap, self.settings.backoff_base * 2 ** (attempt - 1)))
            await asyncio.sleep(max(delay, verdict.retry_after or 0.0))

    # ------------------------------------------------------------------ the lines

    def _record(self, item: Input, job: Job, sent: int, status: str, answer: Any, response: Any,
                error: Optional[str], error_kind: Optional[str] = None,
                headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """One input's line; `sent`: how many inputs its request carried."""
        last = job.attempt_log[-1] if job.attempt_log else None
        return {
            "input": item.id, "status": status,
            "http_status": answer.status if answer is not None else None,
            "attempts": len(job.attempt_log),
            "latency_ms": round((last[1] - last[0]) * 1000, 3) if last else None,
            "started_at": last[0] if last else None, "finished_at": last[1] if last else None,
            "attempt_log": job.attempt_log,
            "response": response,
            "request_id": request_id(headers or (answer.headers if answer is not None else {})),
            "error": error, "error_kind": error_kind,
            "batch": sent if sent > 1 else None,
        }

    def _succeed(self, items: List[Input], job: Job, answer: Any) -> None:
        content_type = answer.headers.get("content-type", "")
        if is_json(content_type) or (self.shape.kind == LIST and not content_type):
            try:
                value = json.loads(answer.body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                self._fail(items, job, answer, "answer not JSON",
                           "the answer says it is JSON but is not: " + message_of(answer.body, 200))
                return
            parts = split_answer(value, len(items))
            if parts is None:
                self._fail(items, job, answer, "answer not split",
                           "the answer to %d inputs has no list of %d predictions to split; use --batch-size 1"
                           % (len(items), len(items)))
                return
            for item, part in zip(items, parts):
                self._write_ok(item, job, len(items), answer, part)
            return
        output_dir = self.settings.output_dir or (self.writer.path + ".files")
        for item in items:
            path = save_binary(output_dir, self._unique_name(item, output_dir, content_type), answer.body)
            self._write_ok(item, job, len(items), answer,
                           {"file": path, "content_type": content_type, "bytes": len(answer.body)})

    def _unique_name(self, item: Input, output_dir: str, content_type: str) -> str:
        """The answer's file name below output_dir. When an answer of this run (or a line --resume kept)
        has that name already (a.jpg and a.png; IMG_1.jpg from two directories given by absolute paths),
        the input's id hash goes into the name, so that no answer overwrites another's."""
        relative = output_name(item.name or item.id, content_type)
        if id_hash(os.path.join(output_dir, relative)) in self.writer.files:
            stem, extension = os.path.splitext(relative)
            relative = "%s-%016x%s" % (stem, id_hash(item.id), extension)
        self.writer.files.add(id_hash(os.path.join(output_dir, relative)))
        return relative

    def _write_ok(self, item: Input, job: Job, sent: int, answer: Any, response: Any) -> None:
        self.writer.write(self._record(item, job, sent, "ok", answer, response, None))
        self.stats.ok += 1
        last = job.attempt_log[-1]
        self.stats.latencies.append(last[1] - last[0])

    def _fail(self, items: List[Input], job: Job, answer: Any, kind: str, message: str,
              headers: Optional[Dict[str, str]] = None) -> None:
        response = None
        if answer is not None and is_json(answer.headers.get("content-type", "")):
            try:
                response = json.loads(answer.body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                response = None
        for item in items:
            self.writer.write(self._record(item, job, len(items), "failed", answer, response, message, kind, headers))
            self.stats.failed += 1
            self.stats.failure_kinds[kind] += 1


def _unreadable(item: Input, error: BaseException) -> str:
    if not item.path:  # a manifest row without text and with no file, or an empty file cell
        return ("%s has no text and names no file: give the row its text (--text-column) or its file "
                "(--file-column)" % item.id)
    return "cannot read %s: %s" % (item.path, _reason(error))


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text (%s)" % error.reason
    return str(error)
