"""The public surface of ocgate.nvm.ipfix (STYLE rule 10)."""

from __future__ import annotations

import ocgate.nvm
import ocgate.nvm.ipfix
import ocgate.nvm.ipfix.events
from ocgate.errors import BadIpfix, RemoteProtocolError

API = {
    "BadIpfix",
    "BasicList",
    "DataRecord",
    "ExporterKey",
    "ExporterStats",
    "FieldSpec",
    "IpfixCollectorCore",
    "MessageRejected",
    "RecordsDecoded",
    "SequenceGap",
    "StoredTemplate",
    "Template",
    "TemplateCache",
    "TemplateLearned",
    "TemplateSpec",
    "TemplateWithdrawn",
    "encode_message",
    "split_stream_untrusted",
} - {"BadIpfix"}


def test_public_api() -> None:
    exported = set(ocgate.nvm.ipfix.__all__)
    assert exported >= API
    assert all(hasattr(ocgate.nvm.ipfix, name) for name in exported)
    assert sorted(ocgate.nvm.ipfix.events.__all__) == ocgate.nvm.ipfix.events.__all__
    assert isinstance(ocgate.nvm.__all__, list)


def test_bad_ipfix_is_a_remote_protocol_error() -> None:
    assert issubclass(BadIpfix, RemoteProtocolError)
