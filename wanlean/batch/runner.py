"""Schedule batch jobs over ComfyUI servers: keep each server's queue short, poll /history, move the
jobs of a server that goes away, retry a failed job once elsewhere, and write every change to the ledger.

One thread, one loop: queue on every server that has room, poll what is queued, sleep a little (10 ms
while things change, backing off to 0.25 s when nothing does). Each server keeps up to `max_pending`
jobs, so it starts the next one the moment it finishes one, and a server that dies holds few jobs.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field

from . import ledger as ledger_events
from .client import ComfyClient, ServerGone, error_of, output_files

WAITING, QUEUED, DONE, FAILED = "waiting", "queued", "done", "failed"
MAX_FAILURES = 2  # a job that failed on two servers (or twice on the only one) is reported, not retried
MAX_MOVES = 3  # a job whose server vanished under it this often is reported (it may be what kills them)
TIMEOUTS_BEFORE_DOWN = 3
POLL_MIN_S, POLL_MAX_S = 0.01, 0.25
QUEUE_CHECK_S = 3.0  # how often a server's /queue is read to find jobs it lost (a restart empties it)
PROBE_DOWN_S = 10.0  # how often a server that went away is asked whether it is back


@dataclass
class Job:
    id: str
    line: int
    prompt: str
    workflow: dict
    hash: str
    state: str = WAITING
    server: str | None = None
    prompt_id: str | None = None
    queued_at: float = 0.0
    seconds: float | None = None
    failed_on: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    moves: int = 0
    outputs: list[dict] = field(default_factory=list)
    resumed: bool = False  # state taken from an earlier run's ledger


@dataclass
class Server:
    client: ComfyClient
    alive: bool = True
    pending: dict[str, Job] = field(default_factory=dict)
    timeouts: int = 0
    down_at: float = 0.0
    queue_checked_at: float = 0.0

    @property
    def url(self) -> str:
        return self.client.url


class Progress:
    """A tqdm bar on standard error when tqdm is installed, else plain lines; `note` prints a status line."""

    def __init__(self, total: int, done: int, stream=None, use_tqdm: bool = True):
        self.total, self.done, self.stream = total, done, stream or sys.stderr
        self.bar = None
        if use_tqdm:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=done, unit="job", file=self.stream, dynamic_ncols=True)
            except ImportError:
                pass

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(f"[{self.done}/{self.total}] {text}", file=self.stream, flush=True)

    def advance(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Runner:
    """Runs `jobs` over `servers` (ComfyClients that answered), writing to `ledger`."""

    def __init__(self, jobs: list[Job], servers: list[ComfyClient], ledger: ledger_events.Ledger,
                 max_pending: int = 2, progress: Progress | None = None):
        self.jobs = jobs
        self.servers = [Server(client) for client in servers]
        self.ledger = ledger
        self.max_pending = max(1, max_pending)
        self.progress = progress
        self.stopped_reason = ""

    # --- resume ----------------------------------------------------------------------------------
    def resume(self) -> None:
        """Take each job's state from the ledger: done jobs stay done; a job queued by an earlier run is
        polled where it was queued (it may have finished or still be running there), not queued again."""
        last = self.ledger.last_events()
        by_url = {server.url: server for server in self.servers}
        for job in self.jobs:
            event = last.get(job.id)
            if event is None:
                continue
            if event["event"] == ledger_events.DONE:
                job.state, job.server, job.prompt_id = DONE, event.get("server"), event.get("prompt_id")
                job.outputs, job.seconds, job.resumed = event.get("outputs", []), event.get("seconds"), True
            elif event["event"] == ledger_events.QUEUED and event.get("prompt_id"):
                server = by_url.get(event.get("server"))
                job.prompt_id, job.queued_at = event["prompt_id"], time.monotonic()
                if server is not None:
                    job.state, job.server = QUEUED, server.url
                    server.pending[job.prompt_id] = job
                    server.queue_checked_at = 0.0  # check soon whether the server still has it
                else:  # queued on a server not given this time: ask it once whether it finished
                    self._settle_elsewhere(job, event.get("server", ""))

    def _settle_elsewhere(self, job: Job, url: str) -> None:
        try:
            entry = ComfyClient(url, timeout=2.0).history(job.prompt_id)
        except ServerGone:
            entry = None
        if entry and entry.get("status", {}).get("status_str") == "success":
            self._done(job, url, entry)

    # --- the loop --------------------------------------------------------------------------------
    def run(self) -> list[Job]:
        interval = POLL_MIN_S
        while True:
            waiting = [job for job in self.jobs if job.state == WAITING]
            busy = any(server.pending for server in self.servers)
            if not waiting and not busy:
                break
            alive = [server for server in self.servers if server.alive]
            if not alive:
                self.stopped_reason = "no server answers any more"
                self._note(f"stopped: no server answers any more; {len(waiting)} jobs not run. Start a server and run the same command again to resume.")
                break
            changed = False
            for server in alive:
                changed |= self._fill(server)
            for server in alive:
                changed |= self._poll(server)
            changed |= self._probe_down()
            interval = POLL_MIN_S if changed else min(POLL_MAX_S, interval * 1.5)
            time.sleep(interval)
        return self.jobs

    def _fill(self, server: Server) -> bool:
        """Queue waiting jobs on `server` until it holds `max_pending`."""
        changed = False
        while server.alive and len(server.pending) < self.max_pending:
            job = self._next_job_for(server)
            if job is None:
                break
            job.prompt_id = uuid.uuid4().hex
            # Written before the request: a crash between the two leaves a job the next run polls for
            # (and finds, or finds missing and queues again), never one that runs unrecorded.
            self.ledger.append(ledger_events.QUEUED, job.id, line=job.line, hash=job.hash, server=server.url,
                               prompt_id=job.prompt_id, prompt=job.prompt[:80])
            job.state, job.server, job.queued_at = QUEUED, server.url, time.monotonic()
            server.pending[job.prompt_id] = job
            try:
                prompt_id, refusal = server.client.queue_prompt(job.workflow, job.prompt_id)
            except ServerGone as exc:
                self._server_failed(server, exc)
                return True
            changed = True
            if prompt_id is None:
                del server.pending[job.prompt_id]
                self._failed(job, server.url, f"refused: {refusal}")
            elif prompt_id != job.prompt_id:  # an older ComfyUI that chooses its own ids
                del server.pending[job.prompt_id]
                job.prompt_id = prompt_id
                server.pending[prompt_id] = job
                self.ledger.append(ledger_events.QUEUED, job.id, line=job.line, hash=job.hash, server=server.url,
                                   prompt_id=prompt_id, prompt=job.prompt[:80])
        return changed

    def _next_job_for(self, server: Server) -> Job | None:
        """The first waiting job (in file order) that has not failed on `server`; a job that failed here
        comes back here only when every live server has failed it too."""
        alive = {s.url for s in self.servers if s.alive}
        for job in self.jobs:
            if job.state != WAITING:
                continue
            if server.url not in job.failed_on or alive <= set(job.failed_on):
                return job
        return None

    def _poll(self, server: Server) -> bool:
        changed = False
        unfinished = []
        for prompt_id, job in list(server.pending.items()):
            try:
                entry = server.client.history(prompt_id)
            except ServerGone as exc:
                self._server_failed(server, exc)
                return True
            server.timeouts = 0
            if entry is None:
                unfinished.append(prompt_id)
                continue
            del server.pending[prompt_id]
            changed = True
            if entry.get("status", {}).get("status_str") == "success":
                self._done(job, server.url, entry)
            else:
                self._failed(job, server.url, error_of(entry))
        now = time.monotonic()
        if unfinished and now - server.queue_checked_at > QUEUE_CHECK_S:
            server.queue_checked_at = now
            changed |= self._find_lost(server, unfinished)
        return changed

    def _find_lost(self, server: Server, unfinished: list[str]) -> bool:
        """Jobs the server has neither finished nor queued (it restarted): queue them again."""
        try:
            queued = server.client.queued_ids()
            lost = [pid for pid in unfinished if pid not in queued and server.client.history(pid) is None]
        except ServerGone as exc:
            self._server_failed(server, exc)
            return True
        for prompt_id in lost:
            job = server.pending.pop(prompt_id)
            self._move(job, server.url, "the server no longer has it (restarted?)")
        return bool(lost)

    def _probe_down(self) -> bool:
        now = time.monotonic()
        changed = False
        for server in self.servers:
            if not server.alive and now - server.down_at > PROBE_DOWN_S:
                server.down_at = now
                try:
                    server.client.system_stats(timeout=1.0)
                except ServerGone:
                    continue
                server.alive, server.timeouts, changed = True, 0, True
                self._note(f"{server.url} answers again; it takes jobs again")
        return changed

    # --- state changes ---------------------------------------------------------------------------
    def _done(self, job: Job, url: str, entry: dict) -> None:
        job.state, job.server, job.outputs = DONE, url, output_files(entry)
        job.seconds = round(time.monotonic() - job.queued_at, 2) if job.queued_at else None
        self.ledger.append(ledger_events.DONE, job.id, line=job.line, hash=job.hash, server=url,
                           prompt_id=job.prompt_id, outputs=job.outputs, seconds=job.seconds)
        if self.progress:
            self.progress.advance()
        files = ", ".join(item["filename"] for item in job.outputs) or "no output files"
        self._note(f"line {job.line}: done on {url} ({job.seconds} s): {files}")

    def _failed(self, job: Job, url: str, error: str) -> None:
        job.failed_on.append(url)
        job.errors.append(f"{url}: {error}")
        final = len(job.failed_on) >= MAX_FAILURES
        self.ledger.append(ledger_events.FAILED, job.id, line=job.line, hash=job.hash, server=url,
                           prompt_id=job.prompt_id, error=error, final=final)
        if final:
            job.state = FAILED
            if self.progress:
                self.progress.advance()
            self._note(f"line {job.line}: FAILED twice, not retried: {error}")
        else:
            job.state = WAITING
            self._note(f"line {job.line}: failed on {url} ({error}); retrying once elsewhere")

    def _move(self, job: Job, url: str, reason: str) -> None:
        job.moves += 1
        self.ledger.append(ledger_events.MOVED, job.id, line=job.line, hash=job.hash, server=url,
                           prompt_id=job.prompt_id, reason=reason)
        if job.moves > MAX_MOVES:
            job.state = FAILED
            job.errors.append(f"{url}: its server went away under it {job.moves} times ({reason})")
            self.ledger.append(ledger_events.FAILED, job.id, line=job.line, hash=job.hash, server=url,
                               prompt_id=job.prompt_id, error=job.errors[-1], final=True)
            if self.progress:
                self.progress.advance()
            self._note(f"line {job.line}: FAILED: {job.errors[-1]}")
            return
        job.state = WAITING

    def _server_failed(self, server: Server, exc: ServerGone) -> None:
        server.timeouts += 1
        if not exc.refused and server.timeouts < TIMEOUTS_BEFORE_DOWN:
            return
        server.alive, server.down_at = False, time.monotonic()
        moved = list(server.pending.values())
        server.pending.clear()
        for job in moved:
            self._move(job, server.url, f"server went away: {exc.reason}")
        self._note(f"{server.url} went away ({exc.reason}); {len(moved)} of its jobs moved to the other servers")

    def _note(self, text: str) -> None:
        if self.progress:
            self.progress.note(text)
