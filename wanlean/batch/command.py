"""`wanlean batch PROMPTS --workflow W.json --server URL [...]`: check the input, build the jobs, run them,
list (and optionally download) what they saved. Exit codes: 0 all done, 1 some failed or not run,
2 bad input (nothing queued), 130 interrupted (the ledger stays consistent; run again to resume)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from ..errors import WanLeanError
from ..prompt.prep import read_prompts
from . import ledger as ledger_module
from . import workflow as wf
from .client import ComfyClient, ServerGone
from .runner import DONE, FAILED, Job, Progress, Runner

EXIT_OK, EXIT_INCOMPLETE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class BatchOptions:
    prompts: str
    workflow: str
    servers: list[str]
    download: str | None = None
    ledger: str | None = None
    max_pending: int = 2
    connect_timeout: float = 5.0
    use_tqdm: bool = True
    stream: object = None  # where status goes (default standard error)
    out: object = None  # where the final listing goes (default standard output)


@dataclass
class BatchResult:
    exit_code: int
    jobs: list[Job] = field(default_factory=list)
    ledger: str = ""
    downloaded: list[str] = field(default_factory=list)


def answering_servers(urls: list[str], timeout: float, stream) -> list[ComfyClient]:
    """The servers that answer GET /system_stats within `timeout`; the others are named on `stream`."""
    clients = []
    for url in dict.fromkeys(urls):
        client = ComfyClient(url)
        try:
            client.system_stats(timeout=timeout)
        except ServerGone as exc:
            print(f"wanlean batch: --server {url} does not answer ({exc.reason}); is ComfyUI running there "
                  "(python main.py --listen ...)? Going on without it.", file=stream)
            continue
        clients.append(client)
    if not clients:
        raise WanLeanError("--server: no server answered GET /system_stats within "
                           f"{timeout:g} s ({', '.join(urls)}). Start ComfyUI there, or check the address and port.")
    return clients


def build_jobs(records: list[tuple[int, dict]], api: dict, stream) -> list[Job]:
    """One job per prompt line: the workflow filled with it. All lines are checked before any is queued."""
    wf.prompt_targets(api)  # no target: stop here, naming the workflow's problem
    has_sampler = bool(wf.sampler_ids(api))
    problems, unknown = [], {}
    for line, record in records:
        problems += wf.check_overrides(record, line, has_sampler)
        for key in record:
            if key not in wf.OVERRIDES and key not in wf.KNOWN_FIELDS:
                unknown.setdefault(key, []).append(line)
    if problems:
        raise WanLeanError("PROMPTS: " + " ".join(problems))
    for key, lines in unknown.items():
        print(f"wanlean batch: note: field '{key}' (lines {_lines(lines)}) is not an override and is ignored; "
              f"overrides are {', '.join(wf.OVERRIDES)}.", file=stream)
    jobs = []
    for line, record in records:
        filled = wf.fill(api, record)
        digest = wf.workflow_hash(filled)
        jobs.append(Job(id=f"{line}-{digest}", line=line, prompt=record["prompt"], workflow=filled, hash=digest))
    return jobs


def _lines(lines: list[int]) -> str:
    return ", ".join(map(str, lines[:10])) + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")


def run_batch(options: BatchOptions) -> BatchResult:
    stream = options.stream or sys.stderr
    out = options.out or sys.stdout
    try:
        records = read_prompts(options.prompts)
    except WanLeanError as exc:
        raise WanLeanError(str(exc).replace("FILE:", "PROMPTS:", 1)) from None
    workflow = wf.load_workflow(options.workflow)
    if options.max_pending < 1:
        raise WanLeanError(f"--max-pending must be 1 or more; got {options.max_pending}.")
    clients = answering_servers(options.servers, options.connect_timeout, stream)
    if wf.workflow_format(workflow) == "ui":
        try:
            object_info = clients[0].object_info()
        except ServerGone as exc:
            raise WanLeanError(f"--server: {clients[0].url} did not give /object_info ({exc.reason}), which converting a "
                               "UI-format workflow needs. Try again, or save the workflow with Export (API).") from None
        api = wf.ui_to_api(workflow, object_info)
    else:
        api = {str(node_id): node for node_id, node in workflow.items()}
    jobs = build_jobs(records, api, stream)
    ledger_path = options.ledger or ledger_module.default_path(options.prompts)
    ledger = ledger_module.Ledger(ledger_path)
    result = BatchResult(EXIT_INCOMPLETE, jobs, ledger_path)
    progress = None
    try:
        if ledger.skipped_lines:
            print(f"wanlean batch: ledger {ledger_path}: skipped unreadable lines {_lines(ledger.skipped_lines)} "
                  "(a write cut short); the jobs they named are checked again.", file=stream)
        runner = Runner(jobs, clients, ledger, options.max_pending)
        runner.resume()
        done_before = sum(job.state == DONE for job in jobs)
        print(f"wanlean batch: {len(jobs)} jobs from {options.prompts} over {len(clients)} server(s); "
              f"{done_before} already done (ledger {ledger_path})", file=stream)
        progress = runner.progress = Progress(len(jobs), done_before, stream, options.use_tqdm)
        runner.run()
    finally:
        if progress:
            progress.close()
        ledger.close()
    if options.download:
        result.downloaded = download_outputs(jobs, options.download, stream)
    print_summary(jobs, ledger_path, out)
    result.exit_code = EXIT_OK if all(job.state == DONE for job in jobs) else EXIT_INCOMPLETE
    return result


def download_outputs(jobs: list[Job], folder: str, stream) -> list[str]:
    """Each done job's output files into `folder` as lineNNNN_<filename> (names from two servers collide
    otherwise); files already there are kept."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise WanLeanError(f"--download: cannot make folder '{folder}' ({exc.strerror}). Give a writable folder.") from None
    saved = []
    for job in jobs:
        if job.state != DONE:
            continue
        for item in job.outputs:
            target = os.path.join(folder, f"line{job.line:04d}_{os.path.basename(item['filename'])}")
            if not os.path.exists(target):
                try:
                    ComfyClient(job.server).download(item, target)
                except ServerGone as exc:
                    print(f"wanlean batch: line {job.line}: could not download {item['filename']} from {job.server} ({exc.reason})", file=stream)
                    continue
            saved.append(target)
    return saved


def print_summary(jobs: list[Job], ledger_path: str, out) -> None:
    done = sum(job.state == DONE for job in jobs)
    failed = sum(job.state == FAILED for job in jobs)
    print(f"wanlean batch: {done} done, {failed} failed, {len(jobs) - done - failed} not run, of {len(jobs)} (ledger {ledger_path})", file=out)
    for job in jobs:
        if job.state == DONE:
            files = ", ".join(os.path.join(item["subfolder"], item["filename"]) if item["subfolder"] else item["filename"]
                              for item in job.outputs) or "no output files"
            print(f"line {job.line}: done on {job.server}: {files}", file=out)
        elif job.state == FAILED:
            print(f"line {job.line}: FAILED: {' | '.join(job.errors)}", file=out)
        else:
            print(f"line {job.line}: not run", file=out)
