"""Small jobs for the Cloud Run tests: cheap to import in every step's and run's process.

SUNRISE_TEST_MARKERS (a directory) lets a process know whether it already ran once.
"""

import os
import time
from pathlib import Path

from dagster import Definitions, OpExecutionContext, RetryPolicy, in_process_executor, job, op

from resources.cloud_run.executor import cloud_run_executor

FAN_OUT = 4


def _marker(name: str) -> Path:
    return Path(os.environ["SUNRISE_TEST_MARKERS"]) / name


def _make_leaf(i: int):
    @op(name=f"leaf_{i}")
    def leaf(context: OpExecutionContext) -> int:
        time.sleep(0.5)
        return i

    return leaf


LEAVES = [_make_leaf(i) for i in range(FAN_OUT)]


@op(tags={"sunrise/cloud_run_cpu": "2", "sunrise/cloud_run_memory": "4Gi"})
def big_step(context: OpExecutionContext) -> dict:
    """Asks for 2 CPU and 4 GiB: runs in the job's resource variant."""
    return {"cpus": os.cpu_count(), "execution": os.environ.get("CLOUD_RUN_EXECUTION")}


@op
def gather(context: OpExecutionContext, big: dict, leaves: list[int]) -> int:
    return sum(leaves)


@op
def collect(context: OpExecutionContext, values: list[int]) -> list[int]:
    return sorted(values)


@job(executor_def=cloud_run_executor)
def fan_out_job():
    values = [leaf() for leaf in LEAVES]
    gather(big_step(), collect(values=values))


@op(retry_policy=RetryPolicy(max_retries=1))
def raises_once(context: OpExecutionContext) -> str:
    if context.retry_number == 0:
        raise RuntimeError("first attempt fails (test)")
    return "ok"


@op(retry_policy=RetryPolicy(max_retries=1))
def dies_once(context: OpExecutionContext) -> str:
    """Its first process dies without a word: only the health check can notice."""
    if context.retry_number == 0:
        os._exit(3)
    return "ok"


@op
def after(context: OpExecutionContext, a: str, b: str) -> str:
    return a + b


@job(executor_def=cloud_run_executor)
def flaky_job():
    after(raises_once(), dies_once())


@op
def sleeps(context: OpExecutionContext) -> None:
    deadline = time.time() + float(os.environ.get("SUNRISE_TEST_SLEEP", "120"))
    while time.time() < deadline:
        time.sleep(0.2)


@job(executor_def=in_process_executor)
def slow_job():
    sleeps()


@job(executor_def=cloud_run_executor)
def slow_steps_job():
    sleeps()


@op
def crashes_first_time(context: OpExecutionContext) -> str:
    marker = _marker(f"crashed-{context.run_id}")
    if not marker.exists():
        marker.write_text("x")
        os._exit(1)  # the run worker dies mid-run
    return "resumed"


@job(executor_def=in_process_executor)
def crash_once_job():
    crashes_first_time()


defs = Definitions(jobs=[fan_out_job, flaky_job, slow_job, slow_steps_job, crash_once_job])
