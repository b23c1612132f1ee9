"""Point the CMake exports of the ROS 2 PyPI wheels at this machine's Python and numpy headers.

The `ros-*` wheels were built in a container whose Python lived in /opt/python/cp311-cp311; their
exported CMake targets still name its include folders, and CMake refuses imported targets whose
include folders do not exist ("Imported target ... includes non-existent path"). Building our
messages against the wheels needs those paths rewritten once per venv. Idempotent.
"""

import re
import sys
import sysconfig
from pathlib import Path

import numpy

WHEEL_BUILD_PREFIX = re.compile(r"/opt/python/cp3\d+-cp3\d+/")


def main() -> int:
    prefix = Path(sys.prefix)
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    changed = 0
    for path in (prefix / "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        if "/opt/python/" not in text:
            continue
        text = re.sub(
            r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include",
            numpy_include,
            text,
        )
        text = re.sub(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+", python_include, text)
        if WHEEL_BUILD_PREFIX.search(text):
            print(f"warning: unhandled wheel-build path left in {path}", file=sys.stderr)
        path.write_text(text)
        changed += 1
    print(f"fix_ros_wheel_cmake: rewrote {changed} CMake files under {prefix / 'share'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
