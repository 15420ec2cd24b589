"""The inputs of moe-prepare: JSONL, Parquet and plain text, read as a stream of records.

Every reader yields (record index, line number or None, id value or None, text as bytes), hashes
the file's bytes into `sha` and keeps `cursor.done`, the input bytes consumed, for the progress
line. Errors are InputError: one line naming the file, record and field.
"""
import json
import os


class InputError(Exception):
    """One line naming the file, record and field."""


def where(path, record, field, line=None):
    at = f"record {record}" + (f" (line {line})" if line is not None else "")
    return f"{path}: {at}, field '{field}'" if field else f"{path}: {at}"


class Cursor:
    done = 0


def read_jsonl(path, field, id_field, sha, cursor):
    with open(path, "rb") as f:
        record = 0
        for line_no, raw in enumerate(f, start=1):
            sha.update(raw)
            cursor.done += len(raw)
            if not raw.strip():
                continue  # blank lines separate nothing in JSONL
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise InputError(f"{where(path, record, None, line_no)}: not valid UTF-8 at byte {e.start}") from None
            except json.JSONDecodeError as e:
                raise InputError(f"{where(path, record, None, line_no)}: malformed JSON: {e.msg}") from None
            if not isinstance(obj, dict):
                raise InputError(f"{where(path, record, None, line_no)}: expected a JSON object")
            yield record, line_no, field_value(obj, id_field, path, record, line_no), text_value(
                obj, field, path, record, line_no
            )
            record += 1


def field_value(obj, name, path, record, line):
    if name is None:
        return None
    if name not in obj:
        raise InputError(f"{where(path, record, name, line)}: missing")
    return obj[name]


def text_value(obj, field, path, record, line):
    value = field_value(obj, field, path, record, line)
    if not isinstance(value, str):
        raise InputError(f"{where(path, record, field, line)}: expected a string, found {type(value).__name__}")
    try:
        return value.encode("utf-8")  # JSON escapes can carry lone surrogates: not UTF-8 text
    except UnicodeEncodeError as e:
        raise InputError(f"{where(path, record, field, line)}: not valid UTF-8 (character {e.start})") from None


def read_text(path, sha, cursor):
    with open(path, "rb") as f:
        for record, raw in enumerate(f):
            sha.update(raw)
            cursor.done += len(raw)
            yield record, record + 1, None, raw.rstrip(b"\r\n") if raw.endswith(b"\n") else raw


def read_parquet(path, field, id_field, sha, cursor, chunk_rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    table = pq.ParquetFile(path)
    names = table.schema_arrow.names
    for name in (field, id_field):
        if name is not None and name not in names:
            raise InputError(f"{where(path, 0, name)}: missing (the file's columns: {', '.join(names)})")
    columns = [field] + ([id_field] if id_field else [])
    record, size, rows = 0, os.path.getsize(path), max(table.metadata.num_rows, 1)
    for batch in table.iter_batches(batch_size=chunk_rows, columns=columns):
        texts = batch.column(0)
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type) or pa.types.is_binary(texts.type)):
            raise InputError(f"{where(path, record, field)}: column of type {texts.type}, expected strings")
        # As bytes, so that each record's UTF-8 is checked (and named) on its own.
        texts = texts.cast(pa.large_binary()).to_pylist()
        ids = batch.column(1).to_pylist() if id_field else [None] * len(texts)
        for text, doc_id in zip(texts, ids):
            if text is None:
                raise InputError(f"{where(path, record, field)}: null")
            yield record, None, doc_id, text
            record += 1
        cursor.done = size * record // rows
