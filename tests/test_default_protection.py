"""The default protection is the one the identity scorecards chose, and it never degrades
silently: if it needs weights and they are missing, the CLI refuses to start."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamguard.config import Config
from streamguard.protect.adversarial import ADVERSARIAL_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
SCORECARD = ROOT / "benchmarks" / "results" / "privacy.json"
VIDEO_SCORECARD = ROOT / "benchmarks" / "results" / "privacy_video.json"


def test_the_config_default_is_the_scorecards_choice():
    chosen = json.loads(SCORECARD.read_text())["chosen_default"]
    assert Config().protect.mode == chosen["mode"]
    assert Config().protect.blocks == chosen["blocks"]


def test_the_choice_is_the_lowest_worst_case_within_the_look_budget():
    doc = json.loads(SCORECARD.read_text())
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from privacy import choose_default

    assert choose_default(doc["records"], doc["look"]) == doc["chosen_default"]


def test_the_config_default_is_the_choice_over_the_still_and_the_video_scorecards():
    chosen = json.loads(VIDEO_SCORECARD.read_text())["chosen"]
    protect = Config().protect
    assert (protect.mode, protect.blocks, protect.lock) == (
        chosen["mode"], chosen["blocks"], chosen["lock"])
    if "hold_frames" in chosen:
        assert protect.hold_frames == chosen["hold_frames"]
    # the still scorecard agrees on what it scores: the mode and the block count
    still = json.loads(SCORECARD.read_text())["chosen_default"]
    assert (still["mode"], still["blocks"]) == (chosen["mode"], chosen["blocks"])


def test_the_video_choice_is_the_lowest_worst_case_over_both_within_both_look_budgets():
    doc = json.loads(VIDEO_SCORECARD.read_text())
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from privacy_video import choose

    still = json.loads(SCORECARD.read_text())
    assert choose(doc, still) == doc["chosen"]
    assert choose(doc) == doc["chosen_video_only"]


@pytest.mark.skipif(Config().protect.mode not in ADVERSARIAL_WEIGHTS,
                    reason="the chosen default needs no weights")
def test_default_mode_refuses_to_start_without_its_weights(tmp_path):
    env = dict(os.environ, STREAMGUARD_WEIGHTS=str(tmp_path / "none"))
    from streamguard.assets import asset_path

    clip = asset_path("single_face.mp4")
    proc = subprocess.run([sys.executable, "-m", "streamguard", "anonymize", str(clip), "-o",
                           str(tmp_path / "o.mp4")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 9 and "no shipped weights" in proc.stderr
    assert not (tmp_path / "o.mp4").exists()
