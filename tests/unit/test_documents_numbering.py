"""Register numbers and official symbols, without servers."""

import uuid

import pytest

from services.documents.domain import RegisterCounter, official_symbol
from shared.contracts import documents as ev


def test_a_counter_hands_out_the_number_after_its_last_and_names_the_document():
    document_id = uuid.uuid4()
    taken = RegisterCounter("outgoing", 2037, last=14).take(document_id)
    assert (taken.register_name, taken.year, taken.number, taken.document_id) == ("outgoing", 2037, 15, document_id)
    assert RegisterCounter("incoming", 2037).take(document_id).number == 1


def test_the_counter_stream_is_per_department_register_and_year():
    streams = {ev.register_stream(t, r, y) for t in ("a", "b") for r in ("incoming", "outgoing")
               for y in (2036, 2037)}
    assert len(streams) == 8


@pytest.mark.parametrize("number,doc_type,division,symbol", [
    (15, "KH", "cntt", "15/KH-STTTT"),
    (3, "QD", "vp", "03/QĐ-STTTT"),
    (120, "TB", "vp", "120/TB-STTTT"),
    (7, "BC", "khtc", "07/BC-STTTT"),
    (8, "TTR", "vp", "08/TTr-STTTT"),
    (9, "CV", "cntt", "09/STTTT-CNTT"),  # a công văn names the drafting division
])
def test_official_symbols_follow_decree_30(number, doc_type, division, symbol):
    assert official_symbol(number, doc_type, "STTTT", division) == symbol


def test_every_document_type_has_a_name_and_a_symbol_form():
    assert set(ev.DOC_TYPES) == set(ev.DocType.__args__)
    assert all(name and form for name, form in ev.DOC_TYPES.values())
