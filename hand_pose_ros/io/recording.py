"""Write serialized ROS 2 messages into a rosbag2 recording (MCAP storage), without ROS.

The recording is a folder ``<output>/`` holding ``metadata.yaml`` and ``<output name>.mcap``
(rosbag2 format version 9, as ``ros2 bag record -s mcap`` writes it): ``ros2 bag``, rosbags
and Foxglove read it. Messages are written as the CDR bytes received (no decode/re-encode).
Each topic's schema comes from rosbags' built-in ROS 2 kilted type store plus this project's
messages, registered from their .msg files.
"""

import os
import sys
from pathlib import Path

from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from hand_pose_ros.paths import source_checkout_root

PACKAGE = "hand_pose_ros"


class RecordingError(RuntimeError):
    """A recording that cannot be created, or a topic that cannot be recorded."""


def project_msg_dir() -> Path:
    """The folder of our .msg files: the installed share/hand_pose_ros/msg (of this Python's
    prefix, then of the AMENT_PREFIX_PATH entries), else the source checkout's msg/.

    Raises:
        RecordingError: none of these exists.
    """
    ament_prefixes = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    prefixes = [sys.prefix, *filter(None, ament_prefixes)]
    candidates = [Path(prefix) / "share" / PACKAGE / "msg" for prefix in prefixes]
    root = source_checkout_root()
    if root is not None:
        candidates.append(root / "msg")
    for folder in candidates:
        if any(folder.glob("*.msg")):
            return folder
    raise RecordingError(f"cannot find the {PACKAGE} .msg files; looked in "
                         + ", ".join(map(str, candidates)))


def build_typestore() -> Typestore:
    """rosbags' ROS 2 kilted type store with our messages (hand_pose_ros/msg/*) added."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(project_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    typestore.register(types)
    return typestore


class BagRecorder:
    """A rosbag2 MCAP recording being written; use as a context manager or call ``close()``.

    ``output``: the recording folder to create (must not exist yet).
    """

    def __init__(self, output: str | Path, typestore: Typestore | None = None):
        self.output = Path(output)
        self.typestore = typestore or build_typestore()
        try:
            self.writer = Writer(self.output, version=9, storage_plugin=StoragePlugin.MCAP)
            self.writer.open()
        except (WriterError, OSError) as error:
            raise RecordingError(f"cannot create the recording {self.output}: {error}") from None
        self.connections: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}

    @property
    def mcap_path(self) -> Path:
        """The .mcap file inside the recording folder."""
        return self.output / f"{self.output.name}.mcap"

    def add_topic(self, topic: str, msgtype: str, type_hash: str | None = None) -> None:
        """Add ``topic`` of ``msgtype`` ("pkg/msg/Type").

        ``type_hash``: the RIHS01 hash the publishers announce; when given it must equal the
        hash of our definition, else the stored schema would not describe the stored bytes.

        Raises:
            RecordingError: unknown type, or a definition that differs from the publishers'.
        """
        if msgtype not in self.typestore.fielddefs:
            raise RecordingError(
                f"cannot record {topic}: its type {msgtype} is neither in rosbags' ROS 2 kilted "
                f"type store nor in {PACKAGE}'s messages"
            )
        our_hash = self.typestore.hash_rihs01(msgtype)
        if type_hash is not None and type_hash != our_hash:
            raise RecordingError(
                f"cannot record {topic}: its publishers' {msgtype} has hash {type_hash}, our "
                f"definition of it {our_hash} (a different ROS distribution's message?)"
            )
        self.connections[topic] = self.writer.add_connection(
            topic, msgtype, typestore=self.typestore
        )
        self.counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        """Append one CDR-serialized message of an added topic, logged at ``timestamp_ns``."""
        self.writer.write(self.connections[topic], timestamp_ns, data)
        self.counts[topic] += 1

    def close(self) -> None:
        """Write the MCAP summary and metadata.yaml; the recording is valid from then on."""
        if self.writer.storage is not None:
            self.writer.close()

    def __enter__(self) -> "BagRecorder":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
