import tomllib
from pathlib import Path

import pytest

from streamguard.config import Config, load_config
from streamguard.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_config_toml_holds_exactly_the_defaults():
    """config.toml documents every default: loading it must equal the built-in defaults."""
    assert load_config(ROOT / "config.toml") == Config()


def test_every_config_key_has_a_comment():
    for line in (ROOT / "config.toml").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"config.toml line without a comment: {line!r}"


def test_every_field_is_described():
    from streamguard.config import StreamConfig

    sections = {k: v.annotation for k, v in Config.model_fields.items() if k != "streams"}
    sections["streams"] = StreamConfig
    for section_name, section in sections.items():
        for name, field in section.model_fields.items():
            assert field.description, f"{section_name}.{name} has no description"


def test_set_overrides_dotted_keys_with_typed_values():
    cfg = load_config(None, ["detect.tile_every=3", "protect.mode=blur", "encode.crf=28",
                             "protect.solid_color=[255, 0, 0]", "encode.options.tune=film"])
    assert cfg.detect.tile_every == 3
    assert cfg.protect.mode == "blur"
    assert cfg.encode.crf == 28
    assert cfg.protect.solid_color == (255, 0, 0)
    assert cfg.encode.options == {"tune": "film"}


@pytest.mark.parametrize("override, message", [
    ("detect.tile_evry=3", "unknown config key 'detect.tile_evry'"),
    ("nonsense.key=1", "unknown config key 'nonsense.key'"),
    ("protect.blocks", "expects key=value"),
    ("protect.blocks=1", "protect.blocks"),
    ("protect.mode=pixelate", "protect.mode"),
    ('protect.damaged="skip"', "protect.damaged"),
    ("detect.turned_every=-1", "detect.turned_every"),
    ('detect.low_light="dim"', "detect.low_light"),
    ("track.appearance_hold=-1", "track.appearance_hold"),
    ("track.appearance_match=1.5", "track.appearance_match"),
    ("detect.edge_min_score=1.5", "detect.edge_min_score"),
])
def test_bad_overrides_are_rejected_by_name(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, [override])


def test_unknown_key_in_a_file_is_rejected_by_name(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[detect]\nmin_scor = 0.4\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'detect\.min_scor'"):
        load_config(path)


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[detect\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_tracks_must_outlive_the_tiled_revisit_period():
    """A face only the tiles find is re-detected every tile_every frames; a shorter track
    memory would leave it unprotected in between."""
    with pytest.raises(ConfigError, match="max_missed"):
        load_config(None, ["detect.tile_every=20", "track.max_missed=5"])


def test_skipped_frames_need_a_look_back_that_covers_them():
    """detect.every = 2 with no look-back: a face appearing on a skipped frame would go out
    bare on it; refused by name."""
    with pytest.raises(ConfigError, match="live.lookback"):
        load_config(None, ["detect.every=2", "live.lookback=0"])
    assert load_config(None, ["detect.every=2", "live.lookback=1",
                              "live.budget_max_every=2"]).detect.every == 2


def test_the_frame_budget_needs_a_look_back_that_covers_what_it_skips():
    with pytest.raises(ConfigError, match="live.budget_max_every"):
        load_config(None, ["live.lookback=1"])  # the budget may skip 2 frames
    assert not load_config(None, ["live.lookback=1", "live.frame_budget=false"]).live.frame_budget
    with pytest.raises(ConfigError, match="pipeline.realtime"):
        load_config(None, ["pipeline.realtime=true", "track.lookback=1"])


def test_config_toml_parses_as_plain_toml():
    data = tomllib.loads((ROOT / "config.toml").read_text())
    assert set(data) | {"streams"} == set(Config.model_fields)  # streams: commented example
