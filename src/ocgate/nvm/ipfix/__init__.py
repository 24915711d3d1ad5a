"""Sans-IO IPFIX (RFC 7011) collector core with the nvzFlow (Cisco NVM, PEN 9) dictionary.

Reference: /work/shared/reference/nvm-ipfix.md. Feed whole messages to
:meth:`IpfixCollectorCore.receive_message` (UDP/DTLS datagrams as they are; TCP streams cut with
:func:`split_stream_untrusted`) and drain :meth:`IpfixCollectorCore.next_event`. Templates persist
through :meth:`TemplateCache.snapshot` / :meth:`TemplateCache.restore` and :class:`StoredTemplate`.
"""

from __future__ import annotations

from ocgate.nvm.ipfix._cache import LearnResult, StoredTemplate, TemplateCache
from ocgate.nvm.ipfix._decode import (
    MAX_LIST_DEPTH,
    TemplateDecoder,
    compile_template,
    decode_basic_list_untrusted,
)
from ocgate.nvm.ipfix._elements import (
    CISCO_PEN,
    DataType,
    ElementInfo,
    element_by_name,
    element_info,
)
from ocgate.nvm.ipfix._encode import (
    BasicList,
    TemplateSpec,
    VarLen,
    encode_data_set,
    encode_message,
    encode_record,
    encode_set,
    encode_template_set,
    encode_value,
    encode_varlen,
    encode_withdrawal_set,
)
from ocgate.nvm.ipfix._exporter import ExporterKey
from ocgate.nvm.ipfix._limits import DEFAULT_MEMORY_BOUND, Limits, Usage
from ocgate.nvm.ipfix._message import (
    IPFIX_VERSION,
    MessageHeader,
    RawSet,
    SetId,
    pull_message_untrusted,
    split_stream_untrusted,
)
from ocgate.nvm.ipfix._session import ExporterStats, IpfixCollectorCore
from ocgate.nvm.ipfix._templates import (
    ENTERPRISE_BIT,
    MAX_FIELDS_PER_TEMPLATE,
    VARIABLE_LENGTH,
    FieldSpec,
    Template,
    TemplateWithdrawal,
    parse_template_record_untrusted,
    parse_template_set_untrusted,
)
from ocgate.nvm.ipfix.events import (
    DataRecord,
    IpfixEvent,
    MessageRejected,
    RecordsDecoded,
    SequenceGap,
    TemplateLearned,
    TemplateWithdrawn,
)

__all__ = [
    "CISCO_PEN",
    "DEFAULT_MEMORY_BOUND",
    "ENTERPRISE_BIT",
    "IPFIX_VERSION",
    "MAX_FIELDS_PER_TEMPLATE",
    "MAX_LIST_DEPTH",
    "VARIABLE_LENGTH",
    "BasicList",
    "DataRecord",
    "DataType",
    "ElementInfo",
    "ExporterKey",
    "ExporterStats",
    "FieldSpec",
    "IpfixCollectorCore",
    "IpfixEvent",
    "LearnResult",
    "Limits",
    "MessageHeader",
    "MessageRejected",
    "RawSet",
    "RecordsDecoded",
    "SequenceGap",
    "SetId",
    "StoredTemplate",
    "Template",
    "TemplateCache",
    "TemplateDecoder",
    "TemplateLearned",
    "TemplateSpec",
    "TemplateWithdrawal",
    "TemplateWithdrawn",
    "Usage",
    "VarLen",
    "compile_template",
    "decode_basic_list_untrusted",
    "element_by_name",
    "element_info",
    "encode_data_set",
    "encode_message",
    "encode_record",
    "encode_set",
    "encode_template_set",
    "encode_value",
    "encode_varlen",
    "encode_withdrawal_set",
    "parse_template_record_untrusted",
    "parse_template_set_untrusted",
    "pull_message_untrusted",
    "split_stream_untrusted",
]
