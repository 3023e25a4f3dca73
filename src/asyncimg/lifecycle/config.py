"""`asyncimg.toml`: project defaults (style, model, size, polling) and user style presets.

One small file per novel project keeps 30 frames a chapter consistent without repeating
options on every command. Credentials never live here: they come from the environment,
so the file can be committed or shared. Every problem is one line naming the file, the key
path and what is wrong, because a typo found at load time beats a rejected batch.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticKnownError

from asyncimg.constants import (
    DEFAULT_INTERVAL_S,
    DEFAULT_MAX_UNCONFIRMED_RESUBMITS,
    DEFAULT_POLL_CONCURRENCY,
    DEFAULT_REQ_KEY,
    DEFAULT_TASKS_DIR,
    ENV_ACCESS_KEY,
    ENV_SECRET_KEY,
    MIN_INTERVAL_S,
    SUBMIT_READ_TIMEOUT_S,
)
from asyncimg.i18n import N_, _
from asyncimg.lifecycle.refmode import (
    ENV_STORAGE_ACCESS_KEY,
    ENV_STORAGE_SECRET_KEY,
    ReferencesConfig,
    StorageConfig,
)
from asyncimg.lifecycle.styles import (
    BUILTIN_PRESETS,
    PLACEHOLDER,
    StylePreset,
    compose_full_prompt,
    describe_known,
    normalise_name,
)
from asyncimg.protocol.errors import ConfigError, InvalidInput
from asyncimg.protocol.models import get_profile, validate_fields

ENV_CONFIG = "ASYNCIMG_CONFIG"
CONFIG_NAME = "asyncimg.toml"

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×*]\s*(\d+)\s*$")

# Keys that look like credentials, compared after lower-casing and '-' → '_'.
_CREDENTIAL_KEYS = frozenset(
    {
        "access_key",
        "secret_key",
        "accesskey",
        "secretkey",
        "access_key_id",
        "secret_access_key",
        "ak",
        "sk",
        "session_token",
        "volc_accesskey",
        "volc_secretkey",
        "volc_session_token",
    }
)

# Submit fields that belong to each task, not to the defaults.
_PER_TASK_PARAMS = {
    "prompt": N_("it comes from each task"),
    "req_key": N_("set defaults.req_key instead"),
    "image_urls": N_("reference images are given per task (character_images)"),
    "binary_data_base64": N_("reference images are given per task (character_images)"),
    "width": N_("set defaults.size = 'WIDTHxHEIGHT' instead"),
    "height": N_("set defaults.size = 'WIDTHxHEIGHT' instead"),
}

#: pydantic's own messages (their templates) that have a translation; others stay English.
_PYDANTIC_MESSAGES = frozenset(
    {
        N_("Input should be greater than or equal to {ge}"),
        N_("Input should be greater than {gt}"),
        N_("Input should be less than or equal to {le}"),
        N_("Input should be less than {lt}"),
        N_("Input should be a valid integer"),
        N_("Input should be a valid integer, got a number with a fractional part"),
        N_("Input should be a valid integer, unable to parse string as an integer"),
        N_("Input should be a valid number"),
        N_("Input should be a valid number, unable to parse string as a number"),
        N_("Input should be a valid string"),
        N_("Input should be a valid boolean"),
        N_("Input should be a valid dictionary"),
        N_("Input should be a valid list"),
        N_("Input should be a valid dictionary or instance of {class_name}"),
    }
)


def parse_size(text: str) -> tuple[int, int]:
    """'1440x2560' (also X, ×, *) → (1440, 2560); InvalidInput if it is not WIDTHxHEIGHT."""
    match = _SIZE_RE.match(text)
    if not match or int(match[1]) <= 0 or int(match[2]) <= 0:
        raise InvalidInput("size", text, _("is not WIDTHxHEIGHT"), _("e.g. 1440x2560"))
    return int(match[1]), int(match[2])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StyleConfig(_Strict):
    """One `[styles.NAME]` table."""

    template: str
    # None (key absent) on a built-in's name keeps the built-in's aliases.
    aliases: list[str] | None = None
    description: str = ""

    @field_validator("template")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if PLACEHOLDER not in value:
            raise ValueError(
                _("{value!r} has no {placeholder} placeholder; e.g. {example}").format(
                    value=value,
                    placeholder=PLACEHOLDER,
                    example='"{prompt}, Chinese ink wash painting"',
                )
            )
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases_not_blank(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not a.strip() for a in value):
            raise ValueError(_("an alias is empty"))
        return value


class Defaults(_Strict):
    """`[defaults]`: what a task gets when it does not say otherwise."""

    style: str | None = None
    req_key: str = DEFAULT_REQ_KEY
    # Kept as normalised text: 'WIDTHxHEIGHT', an area ('4194304') or 'auto' (lifecycle/sizes).
    size: str | None = None
    tasks_dir: Path = Field(default=Path(DEFAULT_TASKS_DIR), strict=False)
    poll_concurrency: int = Field(default=DEFAULT_POLL_CONCURRENCY, ge=1, le=256)
    interval: float = Field(default=DEFAULT_INTERVAL_S, ge=MIN_INTERVAL_S, le=86400)
    params: dict[str, Any] = Field(default_factory=dict)
    # Unknown submit outcomes resubmitted automatically (each may bill a second task).
    max_unconfirmed_resubmits: int = Field(default=DEFAULT_MAX_UNCONFIRMED_RESUBMITS, ge=0, le=10)
    # Seconds to wait for a submit's answer once the request is sent.
    submit_timeout: float = Field(default=SUBMIT_READ_TIMEOUT_S, gt=0, strict=False)
    # The scheduler (monitor): the most tasks in flight (None: learned from 50430 replies),
    # and fixed submit / poll rates per second (None: adapted to 50429 replies).
    max_in_flight: int | None = Field(default=None, ge=1, le=1000)
    submit_rate: float | None = Field(default=None, gt=0, le=1000, strict=False)
    poll_rate: float | None = Field(default=None, gt=0, le=1000, strict=False)
    # Caps on what the other side may send, in MB (None: sized from the largest output of
    # any model, see asyncimg.protocol.models.default_image_cap / default_reply_cap).
    max_reply_mb: float | None = Field(default=None, gt=0, le=4096, strict=False)
    max_image_mb: float | None = Field(default=None, gt=0, le=4096, strict=False)

    @field_validator("size", mode="before")
    @classmethod
    def _parse_size(cls, value: object) -> object:
        from asyncimg.lifecycle import sizes  # sizes builds on parse_size, defined here

        if value is None:
            return None
        try:
            if not isinstance(value, str):
                raise InvalidInput("size", value, _("not text"))
            return sizes.normalise(value)
        except InvalidInput:
            raise ValueError(
                _(
                    "{value!r} is not WIDTHxHEIGHT, e.g. '1440x2560' "
                    "(jimeng_t2i_v40 also takes '2K', '4K', an area in px², or 'auto')"
                ).format(value=value)
            ) from None

    @property
    def dimensions(self) -> tuple[int, int] | None:
        """`size` as (width, height), or None when the model's default (or choice) applies."""
        return parse_size(self.size) if self.size and "x" in self.size else None


class Config(_Strict):
    """The whole file. `Config()` is the configuration when there is no file."""

    defaults: Defaults = Field(default_factory=Defaults)
    styles: dict[str, StyleConfig] = Field(default_factory=dict)
    # How reference images travel (base64 or URLs) and where URL-bound files are uploaded.
    references: ReferencesConfig = Field(default_factory=ReferencesConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this was read from, or None for built-in defaults."""
        return self._source

    @property
    def presets(self) -> dict[str, StylePreset]:
        """Built-in presets, then the user's; a user style replaces a built-in of that name."""
        user = {normalise_name(name): name for name in self.styles}
        merged: dict[str, StylePreset] = {
            name: preset
            for name, preset in BUILTIN_PRESETS.items()
            if normalise_name(name) not in user
        }
        for name, style in self.styles.items():
            builtin = BUILTIN_PRESETS.get(normalise_name(name))
            if style.aliases is not None:
                aliases = tuple(style.aliases)
            else:
                aliases = builtin.aliases if builtin else ()
            merged[name] = StylePreset(name, style.template, aliases, style.description)
        return merged

    def full_prompt(self, prompt: str, style: str | None = None) -> str:
        """`full_prompt` for a task: its own style, else the configured default style."""
        chosen = style if style is not None else self.defaults.style
        return compose_full_prompt(prompt, chosen, self.presets)

    def submit_fields(self) -> dict[str, Any]:
        """Default submit fields besides prompt and images: `params` plus width/height."""
        fields = dict(self.defaults.params)
        if self.defaults.dimensions:
            fields["width"], fields["height"] = self.defaults.dimensions
        elif self.defaults.size and self.defaults.size.isdigit():
            fields["size"] = int(self.defaults.size)
        return fields

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        self._check_style_names()
        presets = self.presets
        known = {normalise_name(n) for n in presets}
        for preset in presets.values():
            known.update(normalise_name(a) for a in preset.aliases)
        style = self.defaults.style
        if style is not None and normalise_name(style) not in known:
            raise ValueError(
                _("defaults.style: unknown style {style!r}; known: {known}").format(
                    style=style, known=describe_known(presets)
                )
            )
        try:
            get_profile(self.defaults.req_key)
        except InvalidInput as exc:
            raise ValueError(f"defaults.req_key: {self.defaults.req_key!r}: {exc.rule}") from None
        self._check_params()
        for req_key in self.references.models:
            try:
                get_profile(req_key)
            except InvalidInput as exc:
                raise ValueError(f"references.models.{req_key}: {exc.rule}") from None
        return self

    def _check_style_names(self) -> None:
        seen: dict[str, str] = {}
        for name in self.styles:
            key = normalise_name(name)
            if not key:
                raise ValueError(_("styles: a style name is empty"))
            if key in seen:
                raise ValueError(
                    _("styles.{name}: same name as styles.{other}").format(
                        name=name, other=seen[key]
                    )
                )
            seen[key] = name
        names = {normalise_name(n) for n in BUILTIN_PRESETS} | set(seen)
        for name, style in self.styles.items():
            for alias in style.aliases or ():
                key = normalise_name(alias)
                if key in names and key != normalise_name(name):
                    raise ValueError(
                        _("styles.{name}.aliases: {alias!r} is already the name of a style").format(
                            name=name, alias=alias
                        )
                    )

    def _check_params(self) -> None:
        for key in self.defaults.params:
            if key in _PER_TASK_PARAMS:
                raise ValueError(
                    _("defaults.params.{key}: not a default; {why}").format(
                        key=key, why=_(_PER_TASK_PARAMS[key])
                    )
                )
        try:
            validate_fields(self.defaults.req_key, {"prompt": "x", **self.submit_fields()})
        except InvalidInput as exc:
            if exc.field in ("width", "height", "width x height", "size"):
                where = "defaults.size"
            else:
                where = f"defaults.params.{exc.field}"
            hint = f"; {exc.suggestion}" if exc.suggestion else ""
            raise ValueError(
                _("{where}: {value!r}: {rule} (model {model}){hint}").format(
                    where=where,
                    value=exc.value,
                    rule=exc.rule,
                    model=self.defaults.req_key,
                    hint=hint,
                )
            ) from None


def _find_credentials(data: Mapping[str, Any], prefix: str = "") -> str | None:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key.lower().replace("-", "_") in _CREDENTIAL_KEYS:
            return path
        if isinstance(value, Mapping):
            found = _find_credentials(value, path + ".")
            if found:
                return found
    return None


def _schema_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose keys an error at `loc` is about (for listing the known keys)."""
    if len(loc) == 1:
        return Config
    if len(loc) == 2 and loc[0] == "defaults":
        return Defaults
    if len(loc) == 3 and loc[0] == "styles":
        return StyleConfig
    if len(loc) == 2 and loc[0] in ("references", "storage"):
        return ReferencesConfig if loc[0] == "references" else StorageConfig
    return None


def _describe(error: Mapping[str, Any]) -> str:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == "value_error" and "error" in ctx:
        text = str(ctx["error"])
        return f"{'.'.join(map(str, loc))}: {text}" if loc else text
    where = ".".join(map(str, loc)) or _("(top level)")
    if error["type"] == "extra_forbidden":
        model = _schema_at(loc)
        if model is None:
            return _("{where}: unknown key").format(where=where)
        fields = sorted(model.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
        if close:
            return _("{where}: unknown key; did you mean {name!r}? (known: {known})").format(
                where=where, name=close[0], known=", ".join(fields)
            )
        return _("{where}: unknown key (known: {known})").format(
            where=where, known=", ".join(fields)
        )
    if error["type"] == "missing":
        return _("{where}: required key is missing").format(where=where)
    return _("{where}: {problem} (got {value!r})").format(
        where=where, problem=_pydantic_message(error), value=error.get("input")
    )


def _pydantic_message(error: Mapping[str, Any]) -> str:
    """pydantic's message for `error`, translated when its template is in the catalog."""
    try:
        template = PydanticKnownError(error["type"], error.get("ctx")).message_template
        if template in _PYDANTIC_MESSAGES:
            return _(template).format(**(error.get("ctx") or {}))
    except (KeyError, TypeError, ValueError):
        pass
    return str(error["msg"])


def config_from_mapping(data: Mapping[str, Any], source: str | Path = CONFIG_NAME) -> Config:
    """Validate parsed TOML; ConfigError '<file>: <key path>: <problem>' on the first problem."""
    leaked = _find_credentials(data)
    if leaked:
        names = (ENV_ACCESS_KEY, ENV_SECRET_KEY)
        if leaked.startswith("storage."):
            names = (ENV_STORAGE_ACCESS_KEY, ENV_STORAGE_SECRET_KEY)
        raise ConfigError(
            _(
                "{source}: {key}: credentials do not belong in the config file; remove it and "
                "set {access} and {secret} in the environment"
            ).format(source=source, key=leaked, access=names[0], secret=names[1])
        )
    try:
        config = Config.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc.errors()[0])}") from None
    config._source = Path(source)
    return config


def find_config(path: str | Path | None = None) -> Path | None:
    """Which file applies: `path`, else $ASYNCIMG_CONFIG, else ./asyncimg.toml, else none.

    A file named explicitly (argument or variable) must exist; only the implicit
    ./asyncimg.toml is optional.
    """
    if path is not None:
        explicit = Path(path)
        if not explicit.is_file():
            raise ConfigError(_("{path}: no such config file").format(path=explicit))
        return explicit
    env = os.environ.get(ENV_CONFIG)
    if env:
        from_env = Path(env)
        if not from_env.is_file():
            raise ConfigError(
                _("{path}: no such config file (from ${variable})").format(
                    path=from_env, variable=ENV_CONFIG
                )
            )
        return from_env
    local = Path(CONFIG_NAME)
    return local if local.is_file() else None


def load_config(path: str | Path | None = None) -> Config:
    """Read the applicable config file (see :func:`find_config`); all defaults if none."""
    found = find_config(path)
    if found is None:
        return Config()
    try:
        text = found.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(
            _("{path}: cannot read: {why}").format(path=found, why=exc.strerror or exc)
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(_("{path}: not UTF-8 text").format(path=found)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_("{path}: invalid TOML: {why}").format(path=found, why=exc)) from None
    return config_from_mapping(data, found)
