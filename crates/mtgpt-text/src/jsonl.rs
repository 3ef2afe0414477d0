//! Line-oriented reading of user inputs: JSONL values (`-` is standard input), required string
//! fields, and the texts a tokenizer trains on.
//!
//! Every problem names the file (`<stdin>` for `-`) and the 1-based line. A UTF-8 byte-order
//! mark at the start of an input is skipped: Excel and other Windows tools write one.
use crate::error::{Error, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The path that stands for standard input.
pub const STDIN: &str = "-";

/// The name of `path` in messages: `<stdin>` for [`STDIN`], else the path itself.
pub fn source_name(path: &Path) -> PathBuf {
    if path == Path::new(STDIN) {
        PathBuf::from("<stdin>")
    } else {
        path.to_path_buf()
    }
}

/// `line` without a leading UTF-8 byte-order mark (U+FEFF).
pub(crate) fn strip_bom(line: &str) -> &str {
    line.strip_prefix('\u{feff}').unwrap_or(line)
}

/// Calls `f` with the 1-based number and text of each line of `reader` (without its `\n` or
/// `\r\n`, as `BufRead::lines` gives them; a byte-order mark dropped from line 1) until `f`
/// returns `false`. `name` names the input in errors.
pub(crate) fn for_each_line(
    mut reader: impl BufRead,
    name: &Path,
    mut f: impl FnMut(usize, &str) -> Result<bool>,
) -> Result<()> {
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| mtgpt_core::Error::io(name, e))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        if buf.ends_with(b"\n") {
            buf.pop();
            if buf.ends_with(b"\r") {
                buf.pop();
            }
        }
        let text = std::str::from_utf8(&buf).map_err(|e| {
            Error::bad_record(
                name,
                line,
                "-",
                format!("not valid UTF-8 (at byte {} of the line)", e.valid_up_to()),
            )
        })?;
        let text = if line == 1 { strip_bom(text) } else { text };
        if !f(line, text)? {
            return Ok(());
        }
    }
}

/// Every non-blank line of `path` parsed as JSON, with its 1-based line number; `-` reads
/// standard input. A line that is not UTF-8 or not JSON is an error naming the file and line.
pub fn read_values(path: &Path) -> Result<Vec<(usize, Value)>> {
    if path == Path::new(STDIN) {
        return read_values_from(std::io::stdin().lock(), path);
    }
    let file = std::fs::File::open(path).map_err(|e| mtgpt_core::Error::io(path, e))?;
    read_values_from(BufReader::new(file), path)
}

/// [`read_values`] over any buffered source; `file` names it in errors (through
/// [`source_name`], so `-` shows as `<stdin>`).
pub fn read_values_from(reader: impl BufRead, file: &Path) -> Result<Vec<(usize, Value)>> {
    let name = source_name(file);
    let mut out = Vec::new();
    for_each_line(reader, &name, |line, text| {
        if !text.trim().is_empty() {
            let v = serde_json::from_str(text)
                .map_err(|e| Error::bad_record(&name, line, "-", format!("not valid JSON: {e}")))?;
            out.push((line, v));
        }
        Ok(true)
    })?;
    Ok(out)
}

/// The non-empty string field `name` of a JSON object read from line `line` of `file`;
/// otherwise an error `FILE:LINE: field `NAME`: empty` (or `expected a string`, `missing`).
pub fn required_str<'v>(v: &'v Value, name: &str, file: &Path, line: usize) -> Result<&'v str> {
    let bad = |reason: &str| Error::bad_record(source_name(file), line, name, reason);
    match v.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(bad("empty")),
        Some(_) => Err(bad("expected a string")),
        None => Err(bad("missing")),
    }
}

/// Appends every string in a JSON value (keys excluded) to `out`, depth first, for training
/// a tokenizer on JSONL of any task kind.
pub fn json_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| json_strings(x, out)),
        _ => {}
    }
}

/// The texts a tokenizer trains on: every non-blank line of `.txt` (or other) files and every
/// string field ([`json_strings`]) of `.jsonl`/`.json` files, in order.
pub fn training_texts(paths: &[PathBuf]) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for path in paths {
        let file = std::fs::File::open(path).map_err(|e| mtgpt_core::Error::io(path, e))?;
        let jsonl = path
            .extension()
            .is_some_and(|e| e == "jsonl" || e == "json");
        for_each_line(BufReader::new(file), path, |line, text| {
            if text.trim().is_empty() {
                return Ok(true);
            }
            if jsonl {
                let v: Value = serde_json::from_str(text).map_err(|e| {
                    Error::bad_record(path, line, "-", format!("not valid JSON: {e}"))
                })?;
                json_strings(&v, &mut texts);
            } else {
                texts.push(text.to_string());
            }
            Ok(true)
        })?;
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BOM: &str = "\u{feff}";

    #[test]
    fn a_byte_order_mark_reads_as_without() {
        let cases = [
            "{\"text\": \"a\"}\n{\"text\": \"b\"}\n",
            "\n{\"label\": 1}\r\n",
            "[1, 2]",
        ];
        for text in cases {
            let plain = read_values_from(text.as_bytes(), Path::new("t.jsonl")).unwrap();
            let marked =
                read_values_from(format!("{BOM}{text}").as_bytes(), Path::new("t.jsonl")).unwrap();
            assert_eq!(marked, plain, "{text:?}");
        }
        // Only at the start: a mark inside the file is still bad JSON.
        let e = read_values_from(
            format!("{{}}\n{BOM}{{}}\n").as_bytes(),
            Path::new("t.jsonl"),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.jsonl:2: field `-`: not valid JSON"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_file_and_line_and_dash_is_stdin() {
        let cases: [(&str, &[u8], &str); 4] = [
            (
                "t.jsonl",
                b"{}\n\n{\"a\": \n",
                "t.jsonl:3: field `-`: not valid JSON",
            ),
            ("-", b"{}\nnope\n", "<stdin>:2: field `-`: not valid JSON"),
            (
                "-",
                b"{}\n\"\xff\"\n",
                "<stdin>:2: field `-`: not valid UTF-8 (at byte 1",
            ),
            (
                "t.jsonl",
                b"\n\n1\n{\n",
                "t.jsonl:4: field `-`: not valid JSON",
            ),
        ];
        for (file, input, want) in cases {
            let e = read_values_from(input, Path::new(file)).unwrap_err();
            assert!(
                e.to_string().starts_with(want),
                "{file}: got {e}, want {want}"
            );
            assert!(e.is_bad_record());
        }
        let ok = read_values_from(&b"\n{\"a\": 1}\n\n2"[..], Path::new("-")).unwrap();
        assert_eq!(ok, [(2, json!({"a": 1})), (4, json!(2))]);
    }

    #[test]
    fn required_str_says_what_is_wrong() {
        let v = json!({"text": "hi", "blank": "", "n": 3, "ws": " "});
        let cases = [
            ("text", Ok("hi")),
            ("ws", Ok(" ")),
            ("blank", Err("in.jsonl:7: field `blank`: empty")),
            ("n", Err("in.jsonl:7: field `n`: expected a string")),
            ("gone", Err("in.jsonl:7: field `gone`: missing")),
        ];
        for (name, want) in cases {
            let got = required_str(&v, name, Path::new("in.jsonl"), 7).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_string), "{name}");
        }
        let e = required_str(&v, "gone", Path::new("-"), 2).unwrap_err();
        assert_eq!(e.to_string(), "<stdin>:2: field `gone`: missing");
    }

    #[test]
    fn training_texts_read_txt_lines_and_jsonl_strings_with_or_without_a_bom() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("a.txt", "one\r\n\n  \ntwo\n", vec!["one", "two"]),
            (
                "b.jsonl",
                "{\"text\": \"x\", \"tags\": [\"O\", 1], \"m\": {\"k\": \"y\"}}\n",
                vec!["y", "O", "x"], // object keys in sorted order: m, tags, text
            ),
        ];
        for (name, text, want) in cases {
            for prefix in ["", BOM] {
                let path = dir.path().join(name);
                std::fs::write(&path, format!("{prefix}{text}")).unwrap();
                assert_eq!(training_texts(&[path]).unwrap(), want, "{name} {prefix:?}");
            }
        }
        let bad = dir.path().join("c.jsonl");
        std::fs::write(&bad, "{}\n{\n").unwrap();
        let e = training_texts(std::slice::from_ref(&bad))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}:2: field `-`: not valid JSON", bad.display())),
            "{e}"
        );
    }
}
