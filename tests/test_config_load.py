"""Loading a config: a file, ``--set`` overrides, and errors that name where each bad key came from."""

import pydantic
import pytest

from schemas.config.load import ConfigError, load_config


def test_an_invalid_key_names_the_set_that_gave_it_and_a_file_s_own_key_names_the_file(tmp_path):
    config = tmp_path / "job.toml"
    config.write_text("[normalise]\nmax_side = -1\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(config, ["facez.enabled=false", "faces.scale_factor=0.5"])

    lines = str(caught.value).splitlines()
    assert lines[0] == f"{config}: invalid configuration"
    assert any(line.startswith("  normalise.max_side: ") for line in lines)  # from the file: no --set named
    assert "  faces.scale_factor (from --set faces.scale_factor=0.5): Input should be greater than 1" in lines
    assert any(line.startswith("  facez (from --set facez.enabled=false): unknown key") for line in lines)


def test_a_misspelt_key_gets_the_closest_key_and_a_list_given_as_text_gets_the_list_form(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["normalize.max_side=5", "normalise.max_sid=5", "text.fields=caption", "facez.x=1"])
    message = str(caught.value)
    assert "normalize (from --set normalize.max_side=5): unknown key (did you mean normalise? " in message
    assert (
        "normalise.max_sid (from --set normalise.max_sid=5): unknown key (did you mean normalise.max_side? " in message
    )
    listed = "text.fields (from --set text.fields=caption): Input should be a valid list, written in TOML: --set"
    assert f"""{listed} 'text.fields=["a", "b"]'""" in message
    assert "facez (from --set facez.x=1): unknown key (did you mean faces? " in message
    job = tmp_path / "job.toml"
    job.write_text('[text]\nfields = "caption"\n[quality]\nenabeld = false\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(job)
    assert """  text.fields: Input should be a valid list, written in TOML: fields = ["a", "b"]""" in str(caught.value)
    assert "  quality.enabeld: unknown key (did you mean quality.enabled? " in str(caught.value)


def test_without_a_file_or_overrides_the_defaults_are_valid_and_a_bad_override_alone_is_named():
    assert load_config(None).faces.scale_factor > 1
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["quality.enabled=perhaps"])
    assert str(caught.value).startswith("the defaults: invalid configuration\n  quality.enabled (from --set")


def _keys_with_a_default_that_may_be_unset(model, prefix=""):
    """Every ``section.key`` whose type admits None but whose default is a value, read off the pydantic models."""
    import typing

    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, pydantic.BaseModel):
            yield from _keys_with_a_default_that_may_be_unset(field.annotation, f"{prefix}{name}.")
        elif type(None) in typing.get_args(field.annotation) and field.default is not None:
            yield f"{prefix}{name}"


def test_none_unsets_a_key_that_may_be_unset_from_the_command_line_and_from_a_file(tmp_path):
    """TOML has no null: the docs said "unset to turn it off" of keys whose default no override could remove."""
    from schemas.config import UnishardConfig

    keys = sorted(_keys_with_a_default_that_may_be_unset(UnishardConfig))
    assert "near_dedup.related_max_distance" in keys and "faces.coarse_scale_factor" in keys
    config = load_config(None, [f"{key}=none" for key in keys])
    for key in keys:
        section, name = key.rsplit(".", 1)
        holder = config
        for part in section.split("."):
            holder = getattr(holder, part)
        assert getattr(holder, name) is None, key
    job = tmp_path / "job.toml"
    job.write_text('[near_dedup]\nrelated_max_distance = "None"\n', encoding="utf-8")
    assert load_config(job).near_dedup.related_max_distance is None
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["normalise.max_side=none"])  # a key that needs a value still says so
    assert "normalise.max_side (from --set normalise.max_side=none)" in str(caught.value)


@pytest.mark.parametrize("kind", ["files", "manifest", "webdataset", "mmc4", "obelics"])
def test_an_input_on_the_command_line_takes_every_kind_a_config_file_can_name(tmp_path, kind):
    from pipeline.cli import parse_input

    spec = parse_input(f"{kind}:{tmp_path / 'docs.jsonl'}@factory")
    assert (spec.kind, spec.path, spec.domain) == (kind, str(tmp_path / "docs.jsonl"), "factory")


def test_a_file_s_bad_key_does_not_blame_a_set_nobody_typed(tmp_path):
    """The command line turns --output and --smoke-models into overrides: the first line said "with --set"."""
    config = tmp_path / "job.toml"
    config.write_text("[normalise]\nmax_sidee = 700\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config, ["clip.smoke=true"])
    assert str(caught.value).splitlines() == [
        f"{config}: invalid configuration",
        "  normalise.max_sidee: unknown key (did you mean normalise.max_side? see `unishard config --schema` for the "
        "keys that exist)",
    ]


def test_config_schema_prints_every_key_with_its_default_lists_and_tables_included(capsys):
    """The README: "`unishard config --schema` prints every key with its default". Pydantic leaves out defaults made
    by a factory (``text.fields``, ``quality.group_by``, ``ingest.ignore``...), which a user could not find."""
    import json

    from pipeline.cli import main
    from schemas.config.near_dedup import NearDedupConfig
    from schemas.config.text import TextConfig

    assert main(["config", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    missing = [
        f"{name}.{key}"
        for name, section in schema["$defs"].items()
        for key, field in section.get("properties", {}).items()
        if "default" not in field and key not in section.get("required", [])
    ]
    assert missing == []
    sections = schema["$defs"]
    assert sections["TextConfig"]["properties"]["fields"]["default"] == TextConfig().fields
    assert sections["NearDedupConfig"]["properties"]["keep_distinct"]["default"] == NearDedupConfig().keep_distinct


def test_a_table_for_one_rule_changes_only_the_keys_it_names_from_a_file_and_from_the_command_line(tmp_path):
    """``[quality.blurry] enabled = true`` gave the rule the class's empty threshold: blurry images were shipped."""
    defaults = load_config(None).quality
    job = tmp_path / "job.toml"
    job.write_text("[quality.blurry]\nenabled = true\n[quality.overexposed]\ndeviations = 3.0\n", encoding="utf-8")
    for config in (
        load_config(job).quality,
        load_config(None, ["quality.blurry.enabled=true", "quality.overexposed.deviations=3.0"]).quality,
    ):
        assert config.blurry == defaults.blurry and config.blurry.threshold == 0.03
        assert config.overexposed.threshold == defaults.overexposed.threshold == 0.35
        assert config.overexposed.deviations == 3.0
        assert config.low_contrast == defaults.low_contrast


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_number_that_is_not_finite_is_refused_naming_the_key(value):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [f"quality.blurry.threshold={value}"])
    assert (
        f"quality.blurry.threshold (from --set quality.blurry.threshold={value}): Input should be a finite number"
        in str(caught.value)
    )


def test_an_input_folder_with_an_at_sign_in_its_name_is_taken_whole_unless_a_domain_follows(tmp_path):
    """``--input shots@2x`` (a folder) was read as the folder ``shots`` with the domain ``2x``: no such input."""
    from pipeline.cli import parse_input

    folder = tmp_path / "shots@2x"
    folder.mkdir()
    for given, expected in (
        (str(folder), (str(folder), None)),
        (f"{folder}@factory", (str(folder), "factory")),
        (f"{tmp_path / 'photos'}@factory", (str(tmp_path / "photos"), "factory")),
    ):
        spec = parse_input(given)
        assert (spec.path, spec.domain) == expected


def test_a_key_that_would_read_a_private_field_is_refused_naming_both_keys():
    """``text.fields = ["email"]`` made an e-mail address the caption, and a caption template or ``audit.slices``
    wrote operator names into the shards and the audit: the stages that read them run before safety removes them."""
    overrides = [
        'text.fields=["title", "contact.Email"]',
        'caption.templates={factory=["{label} checked by {inspector}"]}',
        'audit.slices=["line", "camera", "operator", "defect_class", "label", "category"]',
        'split.group_by=["line+Operator"]',
    ]
    with pytest.raises(ConfigError) as raised:
        load_config(None, overrides)
    lines = str(raised.value).splitlines()
    assert lines[1:5] == [
        "  text.fields names 'contact.Email', which safety.private_fields keeps out of every output",
        "  caption.templates.factory names 'inspector', which safety.private_fields keeps out of every output",
        "  split.group_by names 'line+Operator', which safety.private_fields keeps out of every output",
        "  audit.slices names 'operator', which safety.private_fields keeps out of every output",
    ]
    assert "out of safety.private_fields if it is not private" in lines[5]
    assert load_config(None, [*overrides, "safety.private_fields=[]"]).text.fields == ["title", "contact.Email"]


def test_a_section_s_error_names_the_set_given_in_it_without_blaming_it_and_never_a_flag_s_own_override():
    overrides = ['audit.slices=["category"]', "audit.fail_on_bounds=true"]
    with pytest.raises(ConfigError) as raised:
        load_config(None, overrides, typed=overrides[:1])
    assert '  audit (with --set audit.slices=["category"]): audit.skew:' in str(raised.value)
    assert "fail_on_bounds" not in str(raised.value)  # --fail-on-audit's override: not a --set anyone typed


def test_every_file_a_config_file_names_resolves_against_its_folder(tmp_path):
    """``safety.lexicons = ["terms.txt"]`` was read from the working directory, not beside the config file."""
    folder = tmp_path / "job"
    folder.mkdir()
    config = folder / "run.toml"
    config.write_text(
        '[safety]\nlexicons = ["terms.txt", "/abs/more.txt"]\n'
        '[audit]\nlexicon = "lex/audit.json"\n'
        '[clip]\ncheckpoint = "weights/clip.pt"\ncache_dir = "cache"\n'
        '[caption.captioner]\nname = "local-dir:coca"\ncheckpoint = "none"\n',
        encoding="utf-8",
    )

    loaded = load_config(config, [])

    assert loaded.safety.lexicons == [str(folder / "terms.txt"), "/abs/more.txt"]
    assert loaded.audit.lexicon == str(folder / "lex" / "audit.json")
    assert (loaded.clip.checkpoint, loaded.clip.cache_dir) == (str(folder / "weights/clip.pt"), str(folder / "cache"))
    assert (loaded.caption.captioner.name, loaded.caption.captioner.checkpoint) == (
        f"local-dir:{folder / 'coca'}",
        None,
    )
    assert load_config(None, []).audit.lexicon == ""  # empty: the packaged lexicon, no path
