"""What an API error means, in plain words (and in the user's language).

The API answers in terse English ("Post Img Risk Not Pass"); users need to know what it
means for their frame and what to do. Each explanation is a message of the catalog
(`asyncimg/locale/*/asyncimg.po`); English users see the API's own text as before.
"""

from __future__ import annotations

from asyncimg.i18n import N_, _, language
from asyncimg.lifecycle.decide import failure_reason
from asyncimg.protocol.errors import AsyncImgError

#: Business codes (spec §5) and gateway codes → a plain explanation with what to do.
BY_CODE: dict[int | str, str] = {
    50411: N_("the reference image failed the content review: use another image"),
    50412: N_("the prompt failed the content review: rephrase it"),
    50413: N_("the prompt contains sensitive or copyrighted words: rephrase it"),
    50518: N_("the reference image matches copyrighted material: use another image"),
    50512: N_("the text in the output failed the content review: rephrase the prompt"),
    50200: N_("a parameter was refused: check the size, style and fields of the frame"),
    50511: N_(
        "the generated image failed the content review: retrying often passes; "
        "rephrase the prompt if it keeps failing"
    ),
    50519: N_("the generated image matches a copyrighted image: retry or rephrase"),
    50429: N_("too many requests per second: asyncimg slows down and sends it later"),
    50430: N_("the account's limit of unfinished tasks is reached: it is sent when one finishes"),
    50500: N_("the service had an internal error: asyncimg tries again"),
    50501: N_("the service had an internal error: asyncimg tries again"),
    50400: N_("access denied: the model is not activated for this account, or lacks permission"),
    "SignatureDoesNotMatch": N_("the key pair is wrong: check VOLC_ACCESSKEY / VOLC_SECRETKEY"),
    "InvalidAccessKey": N_("the access key is unknown: check VOLC_ACCESSKEY"),
    "InvalidTimestamp": N_("this machine's clock is off by more than 15 minutes: sync it"),
    "AccessDenied": N_("access denied: the model is not activated for this account"),
}

#: Errors without a code, by kind.
BY_KIND: dict[str, str] = {
    "ConnectFailed": N_("the API cannot be reached (network, proxy or endpoint)"),
    "NetworkError": N_("the connection to the API broke off; asyncimg tries again"),
    "TaskGone": N_("the service no longer has this task (results are kept about 12 h)"),
    "EmptyResult": N_("the task finished without an image: retry it"),
    "NoProgress": N_("the task made no progress for too long"),
    "ImageCheckFailed": N_("the downloaded image is incomplete or corrupt"),
    "DownloadAbandoned": N_(
        "the image was corrupt in every download, so the result itself is broken: "
        "resubmit it with the asyncimg retry command given (billed again)"
    ),
    "SaveFailed": N_("the image could not be written to its output file"),
    "OutputRejected": N_("the generated image failed the content review: retry or rephrase"),
    "InputRejected": N_("the request was refused: change the prompt, image or parameters"),
    "AuthError": N_("credentials, clock or permission: fix the setup, then run again"),
    "ServerError": N_("the service had an internal error: asyncimg tries again"),
}


def explanation(code: int | str | None, kind: str | None = None) -> str | None:
    """The plain explanation of an error code (or kind), in the current language."""
    text = BY_CODE.get(code) if code is not None else None
    if text is None and isinstance(code, str) and code.isdigit():
        text = BY_CODE.get(int(code))
    if text is None and kind is not None:
        text = BY_KIND.get(kind)
    return _(text) if text else None


def reason(error: AsyncImgError) -> str:
    """One line for the user: what happened and what to do. In English the API's own words
    (and hint), as before; in another language the explanation first, the API's words
    after it (support needs them, and the request id)."""
    if language() == "en":
        return failure_reason(error)
    plain = explanation(error.code, error.kind)
    if plain is None:
        hint = f" — {_(error.hint)}" if error.hint else ""
        return f"{error}{hint}"
    return f"{plain}（{error}）"


def plain(error: AsyncImgError) -> str:
    """The error as is in English; explained first in another language."""
    return message_of(error.code, error.kind, str(error))


def message_of(code: int | str | None, kind: str, message: str) -> str:
    """A recorded error (ErrorInfo / ErrorSummary) as the user should read it."""
    if language() == "en":
        return message
    plain = explanation(code, kind)
    return f"{plain}（{message}）" if plain else message
