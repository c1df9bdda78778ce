"""Configuration from the command line and from YAML recipes, on Hydra and OmegaConf, over the dataclasses.

The config dataclasses (``RunConfig``, ``TrainConfig``, every model's config, the studies' configs)
hold the defaults and, in their field metadata, the ranges (``bench.config``). This module turns
them into Hydra/OmegaConf *structured configs* and composes user input onto them:

- :class:`Schema` is a list of :class:`Section` s, each a dataclass *instance* (its values are the
  defaults: e.g. the model's defaults for the chosen task and scale) under a key prefix
  (``""`` for top-level fields, ``"train"``, ``"model"``). :meth:`Schema.structured` generates the
  OmegaConf structured config from them (``dataclasses.make_dataclass`` over the same fields, types
  and metadata; nothing is copied by hand);
- :func:`parse_overrides` reads ``key=value`` arguments with **Hydra's override parser** (Hydra's
  grammar: ``train.lr=3e-4``, ``device=null``, ``frames=[16,32]``, quoted strings; ``a,b`` is a
  sweep, :func:`expand_sweeps` turns sweeps into the grid of cells as Hydra's basic sweeper does);
- :func:`load_file` reads a recipe: a YAML file composed by **Hydra's compose API** (a ``defaults:``
  list may pull in other files of its folder; OmegaConf interpolations such as ``${oc.env:SCRATCH}``
  are resolved) or a run record (its stored ``config``);
- :meth:`Schema.compose` applies the settings in order. Every value is checked against its field's
  type and range *before* it is set (``bench.config.check_field``: one line naming the key, the
  expectation and the value); an unknown key names the nearest valid one.

Hydra's application runner is not used: nothing changes the working directory and no ``outputs/``
folder is made; the resolved config of a run is written with the run (see ``bench.run``).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.config import _hints, check_field, expectation, validate
from bench.errors import ConfigError, one_line


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Setting:
    """One value to set: ``key`` is dotted (``train.steps``); ``origin`` says where it came from
    (``"the command line"`` or a file); ``raw`` is the text as typed (command line), used when a
    string field receives something Hydra's grammar reads as a number (``data_root=2024``);
    ``portable``: the value comes from a run record, whose paths are written portably
    (``bench.paths.portable``) and are expanded back on this machine."""

    key: str
    value: Any
    origin: str = "the command line"
    raw: str | None = None
    portable: bool = False

    @property
    def from_file(self) -> bool:
        return self.origin != "the command line"


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    return OverridesParser.create()


def _parse_one(parser, item: str):
    from hydra.errors import HydraException
    try:
        return parser.parse_override(item)
    except HydraException as e:
        raise ConfigError(f"override {item!r} is not of the form key=value in Hydra's grammar "
                          f"({one_line(e)}); quote values with spaces or commas: key='a b'") from None


def parse_overrides(items: Sequence[str], origin: str = "the command line") -> list[Setting]:
    """``key=value`` arguments as settings, read by Hydra's override parser. A sweep (``a,b``,
    ``range(..)``, ``choice(..)``) is refused here: it needs ``-m`` (:func:`expand_sweeps`)."""
    parser = _parser()
    out = []
    for item in items:
        o = _parse_one(parser, item)
        if o.is_delete():
            raise ConfigError(f"{item}: removing an option is not supported; set it instead (key=value)")
        if o.is_sweep_override():
            raise ConfigError(f"{item} is a sweep: run the grid with -m (--multirun); a list value is written "
                              f"with brackets, {o.key_or_group}=[{','.join(o.sweep_string_iterator())}]")
        out.append(Setting(o.key_or_group, o.value(), origin, raw=o.get_value_element_as_str()))
    return out


def expand_sweeps(items: Sequence[str]) -> list[list[str]]:
    """The cells of a sweep, as Hydra's basic sweeper makes them: the cartesian product of every
    sweep override's values, in the order given (``model=a,b task=x,y`` -> ax, ay, bx, by)."""
    parser = _parser()
    lists: list[list[str]] = []
    for item in items:
        o = _parse_one(parser, item)
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise ConfigError(f"{item}: only discrete sweeps (a,b,c, range(..), choice(..), glob(..)) can run")
            lists.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            lists.append([item])
    return [list(cell) for cell in itertools.product(*lists)] if lists else [[]]


def settings_from_mapping(mapping: dict, origin: str, sections: Iterable[str] = (), portable: bool = False,
                          prefix: str = "") -> list[Setting]:
    """A nested mapping (a recipe) as dotted settings. Top-level mappings and mappings under a
    section key are flattened; a mapping deeper down stays one value (a ``dict`` field)."""
    sections = set(sections)
    out = []
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and (key in sections or not prefix):
            out += settings_from_mapping(v, origin, sections, portable, prefix=f"{key}.")
        else:
            out.append(Setting(key, v, origin, portable=portable))
    return out



# ----------------------------------------------------------------------------- files

def load_file(path: str | Path) -> tuple[dict, str, bool]:
    """A recipe file as a plain nested mapping: (mapping, its name for messages, portable).

    ``.yaml``/``.yml``: composed by Hydra (its ``defaults:`` list may name other files of the same
    folder), interpolations resolved. ``.json``: a run record, whose ``config`` is the resolved
    config it ran with (paths portable, expanded on use)."""
    p = Path(path)
    name = str(path)
    if not p.is_file():
        raise ConfigError(f"config file {name} does not exist (--config)")
    if p.suffix == ".json":
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{name}: not readable as JSON ({one_line(e)})") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{name}: expected a run record (a JSON object with a 'config' entry)")
        if "config" not in doc:
            if "task_hash" in doc:
                raise ConfigError(f"{name}: this run record stores no config (written before records held one); "
                                  f"rerun its command instead: {doc.get('command', '?')}")
            raise ConfigError(f"{name}: expected a run record with a 'config' entry")
        return dict(doc["config"]), name, True
    if p.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{name}: expected a .yaml/.yml recipe or a .json run record")
    return compose_yaml(p.parent, p.stem if p.suffix == ".yaml" else p.name), name, False


def compose_yaml(config_dir: str | Path, config_name: str) -> dict:
    """``config_dir/config_name`` composed by Hydra's compose API (no working-directory change, no
    output folder), returned as a plain mapping with interpolations resolved."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    where = Path(config_dir) / (config_name if config_name.endswith((".yaml", ".yml")) else f"{config_name}.yaml")
    if not where.is_file():
        raise ConfigError(f"config file {where} does not exist (--config-dir/--config-name)")
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).absolute()), version_base="1.3"):
            cfg = compose(config_name=config_name)
        data = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise ConfigError(f"{where}: {one_line(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of options (key: value), got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------- schema

@dataclass
class Section:
    """Fields of one dataclass under ``prefix``. ``default`` is an instance: its values are the
    defaults. ``hidden``: fields that configs do not set (derived, or set by the verb).
    ``free``: no dataclass; any key under the prefix is collected into a dict for the caller to
    check (``check``: a function of that dict raising ConfigError)."""

    prefix: str
    default: Any = None
    hidden: tuple[str, ...] = ()
    free: bool = False
    check: Any = None
    label: str = ""  # what the section is, for help texts

    @property
    def cls(self) -> type:
        return type(self.default)

    def fields(self) -> list[dataclasses.Field]:
        if self.free or self.default is None:
            return []
        return [f for f in dataclasses.fields(self.default)
                if f.name not in self.hidden and f.metadata.get("cli", True)]

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name


def _is_str_field(tp: Any) -> bool:
    args = typing.get_args(tp)
    return tp is str or (bool(args) and str in args and all(a in (str, type(None)) for a in args))


def _omega(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_omega(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """Tuples as lists, recursively (what YAML and JSON hold)."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class Schema:
    """Sections composed into one config (see the module doc)."""

    def __init__(self, sections: Sequence[Section], renamed: dict[str, str] | None = None):
        self.sections = list(sections)
        prefixes = [s.prefix for s in self.sections]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError(f"duplicate section prefixes {prefixes}")
        self.renamed = dict(renamed or {})  # key -> a hint where that setting lives instead
        self._keys: dict[str, tuple[Section, str]] = {}
        for s in self.sections:
            for f in s.fields():
                self._keys[s.key(f.name)] = (s, f.name)

    # the structured config -----------------------------------------------------------------
    def _node_class(self, section: Section) -> type:
        hints = _hints(section.cls)
        specs = []
        for f in section.fields():
            value = getattr(section.default, f.name)
            default = field(default_factory=lambda v=value: dict(v), metadata=f.metadata) if isinstance(value, dict) \
                else field(default=value, metadata=f.metadata)
            specs.append((f.name, hints[f.name], default))
        return dataclasses.make_dataclass(f"{section.cls.__name__}Schema", specs)

    def structured(self):
        """The OmegaConf structured config generated from the sections' dataclasses (typed, closed)."""
        from omegaconf import OmegaConf
        specs = []
        top = next((s for s in self.sections if s.prefix == ""), None)
        if top is not None:
            hints = _hints(top.cls)
            for f in top.fields():
                value = getattr(top.default, f.name)
                specs.append((f.name, hints[f.name], field(default_factory=lambda v=value: dict(v))
                              if isinstance(value, dict) else field(default=value)))
        for s in self.sections:
            if s.prefix == "":
                continue
            if s.free:
                specs.append((s.prefix, dict, field(default_factory=dict)))
            else:
                node = self._node_class(s)
                specs.append((s.prefix, node, field(default_factory=node)))
        return OmegaConf.structured(dataclasses.make_dataclass("Config", specs))

    # keys ----------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return list(self._keys)

    def _free_section(self, key: str) -> Section | None:
        for s in self.sections:
            if s.free and key.startswith(f"{s.prefix}."):
                return s
        return None

    def _unknown(self, setting: Setting) -> ConfigError:
        key = setting.key
        where = f"{setting.origin}: " if setting.from_file else ""
        if key in self.renamed:
            return ConfigError(f"{where}{key} is not an option here; {self.renamed[key]}")
        if any(s.prefix == key and s.prefix for s in self.sections):
            return ConfigError(f"{where}{key} is a group of options: set its fields ({key}.<field>=value)")
        keys = self.keys()
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        if not close:  # the same field name in another group (steps=5 -> train.steps)
            leaf = key.rpartition(".")[2]
            leaves = {k.rpartition(".")[2]: k for k in keys}
            near = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.75)
            close = [leaves[near[0]]] if near else []
        groups = ", ".join([f"{s.prefix}.<field>" for s in self.sections if s.prefix] + ["top-level fields"])
        hint = f"did you mean {close[0]}?" if close else f"valid: {groups} (--help lists them)"
        return ConfigError(f"{where}unknown option {key}; {hint}")

    def _value(self, setting: Setting) -> Any:
        """The setting's value checked against its field (type and range), paths expanded."""
        section, name = self._keys[setting.key]
        f = {f.name: f for f in dataclasses.fields(section.cls)}[name]
        value = setting.value
        tp = _hints(section.cls)[name]
        if _is_str_field(tp) and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = setting.raw if setting.raw is not None else str(value)
        if isinstance(value, str) and "${" in value:
            return value  # an interpolation: checked once resolved
        if f.metadata.get("path") and isinstance(value, str) and (setting.portable or value.startswith("$")):
            value = _local_path(setting.key, value, setting.origin)
        try:
            return check_field(section.cls, name, value, section.prefix)
        except ConfigError as e:
            raise ConfigError(f"{setting.origin}: {e}" if setting.from_file else str(e)) from None

    # composition ---------------------------------------------------------------------------
    def compose(self, settings: Iterable[Setting]) -> dict[str, Any]:
        """Apply ``settings`` in order onto the defaults; returns ``{prefix: dataclass instance}``
        (a dict for free sections), every field checked."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException
        cfg = self.structured()
        free: dict[str, dict] = {s.prefix: {} for s in self.sections if s.free}
        for s in settings:
            section = self._free_section(s.key)
            if section is not None:
                free[section.prefix][s.key[len(section.prefix) + 1:]] = s.value
                continue
            if s.key not in self._keys:
                raise self._unknown(s)
            value = self._value(s)
            try:
                OmegaConf.update(cfg, s.key, _omega(value), merge=False)
            except OmegaConfBaseException as e:  # a value the check passed but OmegaConf refuses
                sec, name = self._keys[s.key]
                raise ConfigError(f"{s.key}={value!r}: expected {expectation(sec.cls, name)} "
                                  f"({one_line(e).split(' full_key')[0]})") from None
        try:
            resolved = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"cannot resolve an interpolation: {one_line(e).split(' full_key')[0]}") from None
        out: dict[str, Any] = {}
        for sec in self.sections:
            if sec.free:
                if sec.check is not None:
                    sec.check(free[sec.prefix])
                out[sec.prefix] = free[sec.prefix]
                continue
            values = resolved if sec.prefix == "" else resolved[sec.prefix]
            checked = {f.name: check_field(sec.cls, f.name, values[f.name], sec.prefix) for f in sec.fields()}
            out[sec.prefix] = validate(dataclasses.replace(sec.default, **checked), sec.prefix)
        return out

    # documents -----------------------------------------------------------------------------
    def document(self, composed: dict[str, Any]) -> dict:
        """The composed config as a plain nested mapping (top-level fields first), for YAML/JSON."""
        doc: dict[str, Any] = {}
        for sec in self.sections:
            value = composed[sec.prefix]
            node = dict(value) if sec.free else {f.name: plain(getattr(value, f.name)) for f in sec.fields()}
            if sec.prefix == "":
                doc = {**node, **doc}
            else:
                doc[sec.prefix] = node
        return doc

    def help(self, indent: str = "  ") -> str:
        """Every settable key with its default and what it accepts, by section."""
        lines = []
        for sec in self.sections:
            if sec.free:
                lines.append(f"{sec.label or sec.prefix}:")
                lines.append(f"{indent}{sec.prefix}.<field>=value  (checked against each model's config)")
                continue
            lines.append(f"{sec.label or (sec.prefix + '.<field>' if sec.prefix else 'options')}:")
            for f in sec.fields():
                default = plain(getattr(sec.default, f.name))
                lines.append(f"{indent}{sec.key(f.name):<34} {yaml_scalar(default):<18} {expectation(sec.cls, f.name)}")
        return "\n".join(lines)


def yaml_scalar(value: Any) -> str:
    """A value as YAML/Hydra would write it on one line (``null``, ``true``, ``[0.9, 0.999]``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_scalar(v)}" for k, v in value.items()) + "}"
    return str(value) if value != "" else "''"


def to_yaml(doc: dict) -> str:
    from omegaconf import OmegaConf
    return OmegaConf.to_yaml(OmegaConf.create(plain(doc)))


def _local_path(key: str, value: str, origin: str) -> str:
    """A portable path from a record or recipe as a path of this machine (``bench.paths.expand``)."""
    from bench.paths import OUTSIDE, expand
    if value.startswith(OUTSIDE):
        raise ConfigError(f"{origin}: {key}={value}: a path outside the repository and $FARZOO_HOME on the machine "
                          f"the record was made on; give it again on the command line ({key}=/path/on/this/machine)")
    try:
        return str(expand(value))
    except ValueError as e:
        raise ConfigError(f"{origin}: {key}={value}: {e}; give it on the command line") from None


# ----------------------------------------------------------------------------- verbs with a config

def add_config_arguments(parser) -> None:
    """``--config``, Hydra's ``--config-dir/--config-name``, ``--cfg job`` and the overrides."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="a recipe: a YAML file (Hydra-composed: `defaults:` may name other files of its "
                             "folder) or a run record (.json: its stored config); overrides apply on top")
    parser.add_argument("--config-dir", default=None, help="Hydra style: the folder of --config-name")
    parser.add_argument("--config-name", default=None, help="Hydra style: a recipe name in --config-dir")
    parser.add_argument("--cfg", choices=("job",), default=None,
                        help="print the resolved config (YAML) and exit without running")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="Hydra-grammar overrides: key=value, group.key=value, lists as key=[a,b]")


def file_settings(args, sections: Iterable[str] = ()) -> list[Setting]:
    """The settings of ``--config`` or ``--config-dir/--config-name`` (none if neither)."""
    if args.config and (args.config_dir or args.config_name):
        raise ConfigError("give either --config FILE or --config-dir/--config-name, not both")
    if args.config_name or args.config_dir:
        if not (args.config_name and args.config_dir):
            raise ConfigError("--config-dir and --config-name go together")
        mapping = compose_yaml(args.config_dir, args.config_name)
        return settings_from_mapping(mapping, str(Path(args.config_dir) / args.config_name), sections)
    if not args.config:
        return []
    mapping, name, portable = load_file(args.config)
    return settings_from_mapping(mapping, name, sections, portable=portable)


def compose_simple(schema: Schema, args) -> dict[str, Any]:
    """A study's config: the file (if any), then the overrides, onto ``schema``."""
    prefixes = [s.prefix for s in schema.sections if s.prefix]
    return schema.compose([*file_settings(args, prefixes), *parse_overrides(args.overrides)])


def run_verb(prog: str, description: str, schema: Schema, main, argv: Sequence[str]) -> int:
    """A verb whose options are ``schema`` (a study, a profile): ``--help`` lists every option with its
    default and range, ``--config``/``--cfg job`` as for ``bench run``; ``main(composed, argv)`` runs it."""
    import argparse
    parser = argparse.ArgumentParser(prog=prog, description=description, add_help=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-h", "--help", action="store_true", help="this help, with every option")
    add_config_arguments(parser)
    args = parser.parse_args(list(argv))
    if args.help:
        print(parser.format_help())
        print(schema.help())
        return 0
    composed = compose_simple(schema, args)
    if args.cfg:
        print(to_yaml(schema.document(composed)), end="")
        return 0
    return main(composed, list(argv))
