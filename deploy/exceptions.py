"""Errors of the local stack (Kafka jars, the local broker) and of topic provisioning.

Each class says by its attributes whether retrying may help and what a CLI command
exits with; callers never inspect the message text.
"""

from __future__ import annotations

from runtime.errors import ExitCode, PipelineError

__all__ = [
    "BrokerDiedError",
    "BrokerNotRunningError",
    "BrokerStartError",
    "BrokerStartTimeoutError",
    "BrokerStopError",
    "DeployError",
    "JarFetchError",
    "JavaNotFoundError",
    "JavaVersionError",
    "MavenNotFoundError",
    "PortInUseError",
    "StorageFormatError",
    "ToolMissingError",
    "TopicProvisionError",
]


class DeployError(PipelineError):
    """Root of the local stack's errors."""

    exit_code = ExitCode.UNAVAILABLE


class ToolMissingError(DeployError):
    """A program the local stack needs (Java, Maven) is not installed or not found."""


class JavaNotFoundError(ToolMissingError):
    """No ``java`` in ``$JAVA_HOME/bin`` or on ``PATH``."""


class JavaVersionError(ToolMissingError):
    """The Java runtime found is older than the broker needs (17)."""


class MavenNotFoundError(ToolMissingError):
    """No ``mvn`` on ``PATH``; the broker jars cannot be fetched."""


class JarFetchError(DeployError):
    """Maven could not fetch the broker jars; the message holds Maven's error lines."""

    retriable = True


class BrokerStartError(DeployError):
    """The local broker could not be started."""


class PortInUseError(BrokerStartError):
    """The configured broker port is taken by another process."""

    exit_code = ExitCode.CONFIG


class StorageFormatError(BrokerStartError):
    """``kafka.tools.StorageTool format`` failed on the data directory."""


class BrokerDiedError(BrokerStartError):
    """The broker process exited while starting; the message ends with the tail of its log."""


class BrokerStartTimeoutError(BrokerStartError):
    """The broker did not answer metadata requests within the start timeout."""

    retriable = True


class BrokerStopError(DeployError):
    """The broker process could not be stopped (it survived SIGKILL)."""

    exit_code = ExitCode.SOFTWARE


class BrokerNotRunningError(DeployError):
    """The local broker is not running (``stack status``)."""


class TopicProvisionError(DeployError):
    """The cluster refused to create a topic or change its configs or partitions."""
