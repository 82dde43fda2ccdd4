"""Dagster's executor and run-launcher plumbing that the Cloud Run run launcher and step executor
(resources/cloud_run/) build on. Dagster documents these extension points (custom executors, run
launchers) but exports their base classes and result types only from ``dagster._core``."""

from dagster._core.events import EngineEventData
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.execution.tags import get_tag_concurrency_limits_config
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepDelegatingExecutor,
    StepHandler,
    StepHandlerContext,
)
from dagster._core.launcher.base import CheckRunHealthResult, ResumeRunContext, WorkerStatus
from dagster._grpc.types import ResumeRunArgs
from dagster._serdes import ConfigurableClassData

__all__ = [
    "CheckRunHealthResult",
    "CheckStepHealthResult",
    "ConfigurableClassData",
    "EngineEventData",
    "ResumeRunArgs",
    "ResumeRunContext",
    "RetryMode",
    "StepDelegatingExecutor",
    "StepHandler",
    "StepHandlerContext",
    "WorkerStatus",
    "get_retries_config",
    "get_tag_concurrency_limits_config",
]
