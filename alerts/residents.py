"""Resident profiles: who lives at a bed and whom to call, what a dispatcher needs to act.

A :class:`Resident` is one bed's profile: the name to address the person by, the address, their
own phone, their emergency contacts in the order they are to be called (:class:`Contact`: name,
relation, phone), medical notes and access notes (where the key safe is). It is personal data
of the most sensitive kind, so it is kept apart from everything else: only at the hub, in its
own file (:class:`~alerts.residentstore.ResidentStore`), shown only to dispatcher and admin
keys, never in an alert, a log line or anything sent upstream or to a family (an alert names a
contact by position only: :class:`~alerts.model.ContactCall`).

Profiles come from a care institution's spreadsheet (:func:`parse_csv`) or the API. Bad input
is a value: :func:`problems` and :func:`parse_csv` say what is wrong where (row, column, what),
never repeating the value itself, so a report can be shown or logged without leaking it.

CSV: UTF-8 (a byte-order mark is fine), comma-separated, a header row naming the columns:
``site``, ``bed``, ``display_name`` (required); ``address``, ``phone``, ``medical_notes``,
``access_notes``; ``contact1_name``, ``contact1_relation``, ``contact1_phone`` up to
``contact5_*``. A cell may hold several lines (quoted). A column left out of the file leaves
that field of an existing profile as it is; the contact columns, if present, replace the
contact list. Rows are counted as a spreadsheet shows them (the header is row 1).

>>> result = parse_csv("site,bed,display_name,phone,contact1_name,contact1_phone\\n"
...                    "site-01,bed-0001,Wang Mei,010-5555-0101,Li Ping,138 0000 0001\\n"
...                    "site-01,bed-0002,,not a phone,,\\n")
>>> [row.bed for row in result.rows]
['bed-0001']
>>> for problem in result.problems:
...     print(problem)
row 3, display_name: required
row 3, phone: not a phone number (digits, spaces, ( ) -, an optional leading +)
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
PHONE_PATTERN: Final = r"^\+?[0-9(][0-9 ()-]{1,30}[0-9]$"
LINE_PATTERN: Final = r"^[^\x00-\x1f\x7f]*$"
"""One line of text: no control characters."""
PERSON_NAME_PATTERN: Final = r"^[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s][^\x00-\x1f\x7f]*$"
"""One line of text with something in it (a name)."""
TEXT_PATTERN: Final = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"
"""Text that may run over several lines (and hold tabs), no other control characters."""
MAX_CONTACTS: Final = 5
NAME_MAX: Final = 200
RELATION_MAX: Final = 64
ADDRESS_MAX: Final = 500
NOTES_MAX: Final = 2000
MAX_ROWS: Final = 100_000

_ID = re.compile(ID_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)
_LINE = re.compile(LINE_PATTERN)
_TEXT = re.compile(TEXT_PATTERN)

PROFILE_COLUMNS: Final = ("display_name", "address", "phone", "medical_notes", "access_notes")
CONTACT_FIELDS: Final = ("name", "relation", "phone")
COLUMNS: Final = ("site", "bed", *PROFILE_COLUMNS,
                  *(f"contact{n}_{f}" for n in range(1, MAX_CONTACTS + 1)
                    for f in CONTACT_FIELDS))


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    """An emergency contact: a relative, a neighbour, the family doctor."""

    name: str
    relation: str = ""
    """How they relate to the resident (daughter, neighbour), in the station's words."""
    phone: str


class Resident(msgspec.Struct, frozen=True, kw_only=True):
    """One bed's resident profile (see the module docstring for where it may go)."""

    site: str
    bed: str
    display_name: str
    address: str = ""
    phone: str = ""
    """The resident's own phone; empty: none."""
    contacts: tuple[Contact, ...] = ()
    """Emergency contacts in the order they are to be called."""
    medical_notes: str = ""
    access_notes: str = ""
    """How to get in: key safe, neighbour with a key, door code."""
    updated_at: int = 0
    updated_by: str = ""

    def same_profile(self, other: Resident) -> bool:
        """Equal but for who changed it when."""
        return msgspec.structs.replace(self, updated_at=0, updated_by="") == \
            msgspec.structs.replace(other, updated_at=0, updated_by="")


_LIMITS: Final[Mapping[str, tuple[int, re.Pattern[str], bool]]] = {
    # field: (most characters, allowed text, required)
    "display_name": (NAME_MAX, _LINE, True),
    "address": (ADDRESS_MAX, _TEXT, False),
    "medical_notes": (NOTES_MAX, _TEXT, False),
    "access_notes": (NOTES_MAX, _TEXT, False),
    "name": (NAME_MAX, _LINE, True),
    "relation": (RELATION_MAX, _LINE, False),
}


def _text_problem(field: str, value: str) -> str | None:
    limit, allowed, required = _LIMITS[field]
    if not value.strip():
        return "required" if required else None
    if len(value) > limit:
        return f"too long ({len(value)} characters, at most {limit})"
    if not allowed.fullmatch(value):
        return "holds control characters" if allowed is _TEXT else \
            "holds control characters or line breaks"
    return None


def _phone_problem(value: str, *, required: bool) -> str | None:
    if not value:
        return "required" if required else None
    if not _PHONE.fullmatch(value):
        return "not a phone number (digits, spaces, ( ) -, an optional leading +)"
    return None


def problems(resident: Resident) -> list[tuple[str, str]]:
    """What is wrong with ``resident``: ``(field, what)`` pairs (``contact2_phone`` for a
    contact's field); empty when it may be stored.

    >>> problems(Resident(site="s", bed="b", display_name=" ", phone="1"))[0]
    ('display_name', 'required')
    >>> problems(Resident(site="s", bed="b", display_name="Wang Mei", phone="1"))[0][0]
    'phone'
    """
    found: list[tuple[str, str]] = []
    for name in ("site", "bed"):
        if not _ID.fullmatch(getattr(resident, name)):
            found.append((name, "not an id (letters, digits, _ and -, at most 64)"))
    for name in ("display_name", "address"):
        if (problem := _text_problem(name, getattr(resident, name))) is not None:
            found.append((name, problem))
    if (problem := _phone_problem(resident.phone, required=False)) is not None:
        found.append(("phone", problem))
    if len(resident.contacts) > MAX_CONTACTS:
        found.append(("contacts", f"at most {MAX_CONTACTS} emergency contacts"))
    for n, contact in enumerate(resident.contacts[:MAX_CONTACTS], start=1):
        found += contact_problems(contact, n)
    for name in ("medical_notes", "access_notes"):
        if (problem := _text_problem(name, getattr(resident, name))) is not None:
            found.append((name, problem))
    return found


def contact_problems(contact: Contact, n: int) -> list[tuple[str, str]]:
    """What is wrong with the ``n``-th emergency contact: ``(contact<n>_<field>, what)``."""
    found = []
    for name in ("name", "relation"):
        if (problem := _text_problem(name, getattr(contact, name))) is not None:
            found.append((f"contact{n}_{name}", problem))
    if (problem := _phone_problem(contact.phone, required=True)) is not None:
        found.append((f"contact{n}_phone", problem))
    return found


@dataclass(frozen=True, slots=True)
class RowProblem:
    """What is wrong with one row (or the header, row 1) of a CSV file; never its value."""

    row: int
    column: str
    """The column (``contact2_phone``), or empty for the whole row."""
    message: str

    def __str__(self) -> str:
        return f"row {self.row}{f', {self.column}' if self.column else ''}: {self.message}"


@dataclass(frozen=True, slots=True)
class ResidentRow:
    """One good row of a CSV file: the fields it gives (columns present), to upsert."""

    row: int
    site: str
    bed: str
    fields: Mapping[str, str]
    """The profile columns present in the file (:data:`PROFILE_COLUMNS`), blank ends cut."""
    contacts: tuple[Contact, ...] | None
    """The contact list, when the file has contact columns; None: keep the stored one."""

    def applied_to(self, stored: Resident | None) -> Resident:
        """The profile after this row: ``stored`` with the row's fields (a new one from
        the row alone when there is none)."""
        base = stored or Resident(site=self.site, bed=self.bed, display_name="")
        changed = msgspec.structs.replace(base, **self.fields)
        if self.contacts is not None:
            changed = msgspec.structs.replace(changed, contacts=self.contacts)
        return changed


@dataclass(frozen=True, slots=True)
class CsvImport:
    """A CSV file read: its good rows and, for every other one, what is wrong."""

    rows: tuple[ResidentRow, ...]
    problems: tuple[RowProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_csv(text: str) -> CsvImport:
    """Read a CSV file of resident profiles (format in the module docstring). Rows without
    any value are skipped; every problem is reported (row, column, what), none raised."""
    found: list[RowProblem] = []
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        return CsvImport((), (RowProblem(1, "", "the file is empty: a header row naming the "
                                             "columns comes first"),))
    except csv.Error as exc:
        return CsvImport((), (RowProblem(1, "", f"not CSV ({exc})"),))
    found += _header_problems(header)
    if found:
        return CsvImport((), tuple(found))
    contact_count = max((int(name[7]) for name in header if name.startswith("contact")),
                        default=0)
    rows: list[ResidentRow] = []
    first_row: dict[tuple[str, str], int] = {}
    number = 1
    try:
        for cells in reader:
            number += 1
            if number > MAX_ROWS + 1:
                found.append(RowProblem(number, "", f"more than {MAX_ROWS} rows: split the "
                                                    "file"))
                break
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header):
                found.append(RowProblem(number, "", f"{len(cells)} cells for {len(header)} "
                                                    "columns"))
                continue
            values = dict(zip(header, (c.strip() for c in cells), strict=False))
            row, row_problems = _row(number, values, header, contact_count)
            found += row_problems
            if row is None:
                continue
            key = (row.site, row.bed)
            if key in first_row:
                found.append(RowProblem(number, "bed", f"this bed is also on row "
                                                       f"{first_row[key]}"))
                continue
            first_row[key] = number
            rows.append(row)
    except csv.Error as exc:
        found.append(RowProblem(number + 1, "", f"not CSV ({exc})"))
    return CsvImport(tuple(rows), tuple(found))


def _header_problems(header: Sequence[str]) -> list[RowProblem]:
    found = []
    for name in sorted({n for n in header if header.count(n) > 1}):
        found.append(RowProblem(1, name, "this column is named twice"))
    for name in header:
        if name not in COLUMNS:
            found.append(RowProblem(1, name or "(empty)", "unknown column (known: site, bed, "
                                    "display_name, address, phone, medical_notes, "
                                    "access_notes, contact1_name, contact1_relation, "
                                    f"contact1_phone ... contact{MAX_CONTACTS}_phone)"))
    for name in ("site", "bed", "display_name"):
        if name not in header:
            found.append(RowProblem(1, name, "required column missing"))
    for n in range(1, MAX_CONTACTS + 1):
        present = [f for f in CONTACT_FIELDS if f"contact{n}_{f}" in header]
        if present:
            for f in ("name", "phone"):
                if f not in present:
                    found.append(RowProblem(1, f"contact{n}_{f}", "required column missing "
                                            f"(contact {n} has other columns)"))
            for earlier in range(1, n):
                if f"contact{earlier}_name" not in header:
                    found.append(RowProblem(1, f"contact{earlier}_name",
                                            f"required column missing (contact {n} comes "
                                            "after it)"))
                    break
    return found


def _row(number: int, values: Mapping[str, str], header: Sequence[str], contact_count: int
         ) -> tuple[ResidentRow | None, list[RowProblem]]:
    site, bed = values.get("site", ""), values.get("bed", "")
    contacts: list[Contact] | None = [] if contact_count else None
    ended_at = 0
    profile = Resident(site=site, bed=bed, display_name=values.get("display_name", ""),
                       address=values.get("address", ""), phone=values.get("phone", ""),
                       medical_notes=values.get("medical_notes", ""),
                       access_notes=values.get("access_notes", ""))
    found = [RowProblem(number, column, what) for column, what in problems(profile)
             if column in header]
    for n in range(1, contact_count + 1):
        given = {f: values.get(f"contact{n}_{f}", "") for f in CONTACT_FIELDS}
        if not any(given.values()):
            ended_at = ended_at or n
            continue
        if ended_at:
            found.append(RowProblem(number, f"contact{n}_name", f"contact {ended_at} is empty: "
                                    "list contacts in order from 1, without gaps"))
        contact = Contact(name=given["name"], relation=given["relation"],
                          phone=given["phone"])
        found += [RowProblem(number, column, what)
                  for column, what in contact_problems(contact, n)]
        if contacts is not None:
            contacts.append(contact)
    if found:
        return None, found
    fields = {name: values[name] for name in PROFILE_COLUMNS if name in header}
    return ResidentRow(number, site, bed, fields,
                       tuple(contacts) if contacts is not None else None), []
