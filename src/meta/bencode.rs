//! Bencode (BEP 3): an encoder that writes dictionaries in canonical key order, and a
//! decoder with bounded nesting for bytes from outside.
//!
//! Written here rather than taken from a crate because cas must control the exact
//! bytes of every info dictionary it makes (they are hashed into the info-hash), and
//! the decoder must refuse deep nesting and oversized lengths without allocating.

use std::collections::BTreeMap;

/// A bencoded value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// Keys are raw bytes; `BTreeMap` keeps them sorted as BEP 3 requires.
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from `(key, value)` pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend(format!("{}:", b.len()).as_bytes());
                out.extend(b);
            }
            Value::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode_into(out));
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Why bytes are not bencode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid bencode at byte {at}: {what}")]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

/// Nesting deeper than this is refused.
pub const MAX_DEPTH: usize = 64;

/// Decodes one value that must span all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut p = Parser { bytes, pos: 0 };
    let v = p.value(0)?;
    if p.pos != bytes.len() {
        return Err(p.err("trailing bytes after the value"));
    }
    Ok(v)
}

/// Decodes the value at the start of `bytes` and returns it with the byte range it
/// spans inside a dictionary entry `key` of the top-level dictionary, if present
/// (used to hash a torrent's `info` exactly as written).
pub fn raw_dict_entry<'a>(bytes: &'a [u8], key: &str) -> Result<Option<&'a [u8]>, DecodeError> {
    let mut p = Parser { bytes, pos: 0 };
    if p.peek() != Some(b'd') {
        return Err(p.err("not a dictionary"));
    }
    p.pos += 1;
    while p.peek() != Some(b'e') {
        let is_key = p.bytes_value()? == key.as_bytes();
        let start = p.pos;
        p.value(1)?;
        if is_key {
            return Ok(Some(&bytes[start..p.pos]));
        }
    }
    Ok(None)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError { at: self.pos, what }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn number_until(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let rest = &self.bytes[start..];
        let len = rest
            .iter()
            .take(21)
            .position(|&b| b == end)
            .ok_or_else(|| self.err("unterminated number"))?;
        let text = std::str::from_utf8(&rest[..len]).map_err(|_| self.err("bad number"))?;
        let canonical =
            text == "0" || (!text.starts_with('0') && !text.starts_with("-0") && !text.is_empty());
        let n = text
            .parse::<i64>()
            .ok()
            .filter(|_| canonical)
            .ok_or_else(|| self.err("bad number"))?;
        self.pos += len + 1;
        Ok(n)
    }

    fn bytes_value(&mut self) -> Result<&[u8], DecodeError> {
        if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.err("expected a byte string"));
        }
        let len = self.number_until(b':')?;
        let len = usize::try_from(len).map_err(|_| self.err("negative length"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.err("byte string longer than the input"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek() {
            Some(b'i') => {
                self.pos += 1;
                Ok(Value::Int(self.number_until(b'e')?))
            }
            Some(b'l') => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek() != Some(b'e') {
                    if self.peek().is_none() {
                        return Err(self.err("unterminated list"));
                    }
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            Some(b'd') => {
                self.pos += 1;
                let mut map = BTreeMap::new();
                let mut last: Option<Vec<u8>> = None;
                while self.peek() != Some(b'e') {
                    if self.peek().is_none() {
                        return Err(self.err("unterminated dictionary"));
                    }
                    let k = self.bytes_value()?.to_vec();
                    if last.as_ref().is_some_and(|l| *l >= k) {
                        return Err(self.err("dictionary keys not sorted or repeated"));
                    }
                    let v = self.value(depth + 1)?;
                    last = Some(k.clone());
                    map.insert(k, v);
                }
                self.pos += 1;
                Ok(Value::Dict(map))
            }
            Some(b'0'..=b'9') => Ok(Value::Bytes(self.bytes_value()?.to_vec())),
            Some(_) => Err(self.err("unexpected byte")),
            None => Err(self.err("unexpected end of input")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_canonical_order() {
        let v = Value::dict([
            ("z", Value::Int(-3)),
            ("a", Value::List(vec![Value::str("x")])),
        ]);
        let enc = v.encode();
        assert_eq!(enc, b"d1:al1:xe1:zi-3ee");
        assert_eq!(decode(&enc).unwrap(), v);
        assert_eq!(raw_dict_entry(&enc, "a").unwrap(), Some(&b"l1:xe"[..]));
    }

    #[test]
    fn refuses_hostile_input() {
        assert!(decode(b"99999999999999999999:").is_err());
        assert!(decode(&[b'l'; 10_000]).is_err());
        assert!(decode(b"i01e").is_err());
        assert!(decode(b"d1:bi1e1:ai2ee").is_err());
        assert!(decode(b"4:abc").is_err());
    }
}
