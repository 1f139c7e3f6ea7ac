//! Just enough of the NumPy `.npy` format: reading float32/float64 arrays (either byte order, C or
//! Fortran order, format versions 1 to 3) into `f32`, and streaming a float32 matrix out.
//!
//! The reader never trusts the header: the shape must match the bytes that follow it exactly, so a
//! damaged or truncated file gives an error instead of a huge allocation.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

use crate::input;
use crate::output::excerpt;

const MAGIC: &[u8] = b"\x93NUMPY";

/// An array read from a `.npy` file, converted to f32, in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

/// A row-major matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

/// Largest header accepted, in bytes. numpy writes headers of a few hundred bytes (version 1.0
/// cannot even say more than 64 KiB); a larger one is hostile, and is refused before it is read.
pub const MAX_HEADER_LEN: usize = 64 << 10;

/// Deepest nesting of tuples and lists accepted in a header: shapes nest one level, structured
/// dtypes (refused anyway) a few. The bound keeps the recursive parser's stack small.
const MAX_NESTING: usize = 32;

/// Bytes before the header dictionary of a version 2 or 3 file: magic, version, u32 length.
const MAX_PRELUDE_LEN: usize = 12;

/// Reads any float32/float64 array from `path`: a regular file whose length is checked against
/// the header's shape before the data is read, so that memory is bounded by what the file holds.
pub fn read(path: &Path) -> Result<Array> {
    let mut file = input::open(path, "the .npy file")?;
    read_open(&mut file, path)
        .with_context(|| format!("{} is not a usable .npy array", path.display()))
}

fn read_open(file: &mut input::InputFile, path: &Path) -> Result<Array> {
    let head_len = file.len.min((MAX_PRELUDE_LEN + MAX_HEADER_LEN) as u64);
    let mut bytes = file.read_exact_vec(head_len, path)?;
    let layout = Layout::parse(&bytes)?;
    layout.check_data_len(file.len - layout.data_start as u64)?;
    let rest = layout.data_start as u64 + layout.data_len() as u64 - head_len;
    bytes.extend(file.read_exact_vec(rest, path)?);
    let start = layout.data_start;
    layout.into_array(&bytes[start..])
}

/// Reads a 2-D array; `layout` names the expected axes in errors, e.g. "[probes, logits]".
pub fn read_matrix(path: &Path, layout: &str) -> Result<Matrix> {
    let a = read(path)?;
    match a.shape[..] {
        [rows, cols] => Ok(Matrix {
            data: a.data,
            rows,
            cols,
        }),
        _ => bail!(
            "{}: expected a 2-D array {layout}, got shape {}",
            path.display(),
            shape_str(&a.shape)
        ),
    }
}

/// Reads a vector: shape `[n]`, or `[n, 1]` / `[1, n]`. `what` names it in errors.
pub fn read_vector(path: &Path, what: &str) -> Result<Vec<f32>> {
    let a = read(path)?;
    match a.shape[..] {
        [_] | [_, 1] | [1, _] => Ok(a.data),
        _ => bail!(
            "{}: {what} must be a vector (shape [n], [n, 1] or [1, n]), got shape {}",
            path.display(),
            shape_str(&a.shape)
        ),
    }
}

/// `[3, 4]`.
pub fn shape_str(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

#[derive(Debug, Clone, Copy)]
enum Elem {
    F32 { big_endian: bool },
    F64 { big_endian: bool },
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::F32 { .. } => 4,
            Elem::F64 { .. } => 8,
        }
    }

    /// The value as f32, and as read (f64) to tell an overflow from a stored infinity.
    fn decode(self, b: &[u8]) -> (f32, f64) {
        match self {
            Elem::F32 { big_endian } => {
                let x = f32::from_le_bytes(little_endian(b, big_endian));
                (x, f64::from(x))
            }
            Elem::F64 { big_endian } => {
                let x = f64::from_le_bytes(little_endian(b, big_endian));
                (x as f32, x)
            }
        }
    }
}

/// The bytes of one element in little-endian order: reversed when the file stores big-endian.
fn little_endian<const N: usize>(b: &[u8], big_endian: bool) -> [u8; N] {
    let mut bytes: [u8; N] = b.try_into().expect("the bytes of one element");
    if big_endian {
        bytes.reverse();
    }
    bytes
}

/// Parses a whole `.npy` file held in memory (the unit tests' way in; files go through [`read`]).
#[cfg(test)]
fn parse(bytes: &[u8]) -> Result<Array> {
    let layout = Layout::parse(bytes)?;
    let data = &bytes[layout.data_start..];
    layout.check_data_len(data.len() as u64)?;
    layout.into_array(data)
}

/// What a `.npy` header says about the data that follows it.
#[derive(Debug)]
struct Layout {
    elem: Elem,
    shape: Vec<usize>,
    fortran_order: bool,
    /// Number of elements (the product of the shape; its bytes fit a `usize`).
    count: usize,
    /// Offset of the data: the length of magic, version, header length and header.
    data_start: usize,
}

impl Layout {
    /// Parses the magic, version and header at the start of `bytes`; the data may be missing.
    fn parse(bytes: &[u8]) -> Result<Layout> {
        ensure!(
            bytes.starts_with(MAGIC) && bytes.len() >= 8,
            "not a .npy file (it does not start with the \\x93NUMPY magic bytes)"
        );
        let (len_bytes, start) = match bytes[6] {
            1 => (2, 10),
            2 | 3 => (4, 12),
            v => bail!("unsupported .npy format version {v}.{}", bytes[7]),
        };
        ensure!(bytes.len() >= start, "the file ends inside its header");
        let mut len = [0u8; 4];
        len[..len_bytes].copy_from_slice(&bytes[8..8 + len_bytes]);
        let header_len = u32::from_le_bytes(len) as usize;
        ensure!(
            header_len <= MAX_HEADER_LEN,
            "its header is {header_len} bytes; headers over {MAX_HEADER_LEN} bytes are refused \
             (numpy writes a few hundred)"
        );
        let header_end = start + header_len;
        let header = bytes
            .get(start..header_end)
            .context("the file ends inside its header")?;
        let header = std::str::from_utf8(header).context("the header is not text")?;
        let header = Header::parse(header).context("cannot parse the header")?;

        let elem = match header.descr.as_str() {
            "<f4" | "=f4" => Elem::F32 { big_endian: false },
            ">f4" => Elem::F32 { big_endian: true },
            "<f8" | "=f8" => Elem::F64 { big_endian: false },
            ">f8" => Elem::F64 { big_endian: true },
            other => bail!(
                "its dtype is '{}'; expected float32 ('<f4') or float64 ('<f8')",
                excerpt(other)
            ),
        };
        let count = header
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|n| n.checked_mul(elem.size()).is_some())
            .with_context(|| {
                format!(
                    "shape {} is impossibly large",
                    excerpt(&shape_str(&header.shape))
                )
            })?;
        Ok(Layout {
            elem,
            shape: header.shape,
            fortran_order: header.fortran_order,
            count,
            data_start: header_end,
        })
    }

    /// Bytes of data the shape announces.
    fn data_len(&self) -> usize {
        self.count * self.elem.size()
    }

    /// Checks that exactly the announced data follows the header: before it is read or
    /// allocated, when reading a file.
    fn check_data_len(&self, have: u64) -> Result<()> {
        let want = self.data_len() as u64;
        ensure!(
            have >= want,
            "the header announces shape {} ({want} bytes of data) but only {have} bytes follow: \
             the file is truncated",
            excerpt(&shape_str(&self.shape)),
        );
        ensure!(
            have == want,
            "{} unexpected bytes follow the {want} bytes of data of shape {}",
            have - want,
            excerpt(&shape_str(&self.shape))
        );
        Ok(())
    }

    /// The array of the data (exactly [`Layout::data_len`] bytes).
    fn into_array(self, data: &[u8]) -> Result<Array> {
        Ok(Array {
            data: self.decode(data)?,
            shape: self.shape,
        })
    }

    /// Converts the data (exactly [`Layout::data_len`] bytes) to f32 in C order. A float64 value
    /// beyond the float32 range is an error naming its index, not an infinity.
    fn decode(&self, data: &[u8]) -> Result<Vec<f32>> {
        let mut values = Vec::new();
        values
            .try_reserve_exact(self.count)
            .context("no memory for the array")?;
        for (i, b) in data.chunks_exact(self.elem.size()).enumerate() {
            let (x, wide) = self.elem.decode(b);
            if x.is_infinite() && wide.is_finite() {
                bail!(
                    "the float64 value {wide:e} at index {} is out of the float32 range \
                     (±{:e}) that logits are stored in",
                    element_index(i, &self.shape, self.fortran_order),
                    f32::MAX
                );
            }
            values.push(x);
        }
        Ok(if self.fortran_order && self.shape.len() > 1 {
            fortran_to_c(&values, &self.shape)
        } else {
            values
        })
    }
}

/// The multi-index (`[row, column]` for a matrix) of the `i`-th element in file order.
fn element_index(mut i: usize, shape: &[usize], fortran_order: bool) -> String {
    let mut index = vec![0; shape.len()];
    // File order: the first axis moves fastest in Fortran order, the last in C order.
    let axes: Vec<usize> = if fortran_order {
        (0..shape.len()).collect()
    } else {
        (0..shape.len()).rev().collect()
    };
    for a in axes {
        let dim = shape[a].max(1);
        index[a] = i % dim;
        i /= dim;
    }
    shape_str(&index)
}

/// Reorders column-major values of `shape` into row-major order.
fn fortran_to_c(values: &[f32], shape: &[usize]) -> Vec<f32> {
    // Row-major strides: the C offset of each multi-index.
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let mut out = vec![0f32; values.len()];
    let mut index = vec![0usize; shape.len()];
    for &v in values {
        out[index
            .iter()
            .zip(&strides)
            .map(|(i, s)| i * s)
            .sum::<usize>()] = v;
        // Column-major order: the first axis moves fastest.
        for (i, &dim) in index.iter_mut().zip(shape) {
            *i += 1;
            if *i < dim {
                break;
            }
            *i = 0;
        }
    }
    out
}

/// The header dictionary, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
#[derive(Debug)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value of the Python literal subset that `.npy` headers use.
#[derive(Debug)]
enum Literal {
    Str(String),
    Bool(bool),
    Int(usize),
    Tuple(Vec<Literal>),
    Other(String),
}

impl Literal {
    /// The literal as Python would print it, for messages.
    fn describe(&self) -> String {
        match self {
            Literal::Str(s) => format!("'{s}'"),
            Literal::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            Literal::Int(n) => n.to_string(),
            Literal::Tuple(items) => format!("({})", describe_all(items)),
            Literal::Other(text) => text.clone(),
        }
    }
}

fn describe_all(items: &[Literal]) -> String {
    items
        .iter()
        .map(Literal::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Header {
    fn parse(text: &str) -> Result<Header> {
        let mut p = LiteralParser {
            s: text.trim_end().as_bytes(),
            at: 0,
            depth: 0,
        };
        p.expect(b'{')?;
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        loop {
            p.skip_ws();
            if p.eat(b'}') {
                break;
            }
            let Literal::Str(key) = p.value()? else {
                bail!("a key of the header dictionary is not a string");
            };
            p.skip_ws();
            p.expect(b':')?;
            let value = p.value()?;
            match (key.as_str(), value) {
                ("descr", Literal::Str(s)) => descr = Some(s),
                ("descr", _) => {
                    bail!("structured dtypes are not supported; expected float32 or float64")
                }
                ("fortran_order", Literal::Bool(b)) => fortran = Some(b),
                ("shape", Literal::Tuple(dims)) => {
                    let dims = dims
                        .into_iter()
                        .map(|d| match d {
                            Literal::Int(n) => Ok(n),
                            other => {
                                bail!(
                                    "shape holds {}, not a dimension",
                                    excerpt(&other.describe())
                                )
                            }
                        })
                        .collect::<Result<Vec<_>>>()?;
                    shape = Some(dims);
                }
                (k, v) => bail!(
                    "unexpected header entry '{}': {}",
                    excerpt(k),
                    excerpt(&v.describe())
                ),
            }
            p.skip_ws();
            if !p.eat(b',') {
                p.skip_ws();
                p.expect(b'}')?;
                break;
            }
        }
        Ok(Header {
            descr: descr.context("the header has no 'descr'")?,
            fortran_order: fortran.context("the header has no 'fortran_order'")?,
            shape: shape.context("the header has no 'shape'")?,
        })
    }
}

struct LiteralParser<'a> {
    s: &'a [u8],
    at: usize,
    /// Tuples and lists open around the current position; at most [`MAX_NESTING`].
    depth: usize,
}

impl LiteralParser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.s.get(self.at) == Some(&b);
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        ensure!(
            self.eat(b),
            "expected '{}' at byte {} of the header",
            b as char,
            self.at
        );
        Ok(())
    }

    fn value(&mut self) -> Result<Literal> {
        self.skip_ws();
        let Some(&c) = self.s.get(self.at) else {
            bail!("the header ends early");
        };
        match c {
            b'\'' | b'"' => {
                self.at += 1;
                let start = self.at;
                while self.s.get(self.at).is_some_and(|&b| b != c) {
                    self.at += 1;
                }
                let text = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
                self.expect(c)?;
                Ok(Literal::Str(text))
            }
            b'(' | b'[' => {
                let close = if c == b'(' { b')' } else { b']' };
                self.at += 1;
                self.depth += 1;
                ensure!(
                    self.depth <= MAX_NESTING,
                    "the header nests tuples or lists deeper than {MAX_NESTING} levels"
                );
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.eat(close) {
                        break;
                    }
                    items.push(self.value()?);
                    self.skip_ws();
                    if !self.eat(b',') {
                        self.skip_ws();
                        self.expect(close)?;
                        break;
                    }
                }
                self.depth -= 1;
                // Lists only appear in structured dtypes, which are refused by the caller.
                Ok(if c == b'(' {
                    Literal::Tuple(items)
                } else {
                    Literal::Other(format!("[{}]", describe_all(&items)))
                })
            }
            _ => {
                let start = self.at;
                while self
                    .s
                    .get(self.at)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                {
                    self.at += 1;
                }
                let word = std::str::from_utf8(&self.s[start..self.at]).unwrap_or_default();
                Ok(match word {
                    "True" => Literal::Bool(true),
                    "False" => Literal::Bool(false),
                    "" => bail!("unexpected character {:?} in the header", c as char),
                    w => match w.trim_end_matches('L').parse() {
                        Ok(n) => Literal::Int(n),
                        Err(_) => Literal::Other(w.to_string()),
                    },
                })
            }
        }
    }
}

/// Streams a float32 `[rows, cols]` matrix into `.npy` form, row after row.
pub struct MatrixWriter<W: Write> {
    out: W,
    cols: usize,
    rows_left: usize,
    buf: Vec<u8>,
}

impl<W: Write> MatrixWriter<W> {
    /// Writes the header.
    pub fn new(mut out: W, rows: usize, cols: usize) -> io::Result<Self> {
        out.write_all(&header_bytes(&[rows, cols]))?;
        Ok(MatrixWriter {
            out,
            cols,
            rows_left: rows,
            buf: Vec::new(),
        })
    }

    /// Writes consecutive rows, `values.len()` a multiple of the column count.
    pub fn write_rows(&mut self, values: &[f32]) -> io::Result<()> {
        let rows = values.len().checked_div(self.cols).unwrap_or(0);
        if values.len() != rows * self.cols || rows > self.rows_left {
            return Err(io::Error::other(
                "more values than the announced matrix shape holds",
            ));
        }
        self.buf.clear();
        self.buf.extend(values.iter().flat_map(|x| x.to_le_bytes()));
        self.out.write_all(&self.buf)?;
        self.rows_left -= rows;
        Ok(())
    }

    /// Checks that every announced row was written and hands back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.rows_left != 0 {
            return Err(io::Error::other(format!(
                "{} rows of the announced matrix were never written",
                self.rows_left
            )));
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A version 1.0 header for a little-endian float32 C-order array, padded to 64 bytes.
fn header_bytes(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + length (2) + dict + padding + '\n' is a multiple of 64.
    let unpadded = MAGIC.len() + 4 + dict.len() + 1;
    dict.extend(std::iter::repeat_n(
        ' ',
        unpadded.next_multiple_of(64) - unpadded,
    ));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let dict = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}\n",
            if fortran { "True" } else { "False" }
        );
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn round_trips_a_matrix() {
        let mut w = MatrixWriter::new(Vec::new(), 2, 3).unwrap();
        w.write_rows(&[1.0, 2.0, 3.0]).unwrap();
        w.write_rows(&[4.0, 5.0, 6.0]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!((bytes.len() - 24) % 64, 0);
        let a = parse(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn reads_f64_big_endian_and_fortran_order() {
        let data: Vec<u8> = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let a = parse(&npy(">f8", true, "(2, 3)", &data)).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn refuses_bad_files_with_reasons() {
        let four: Vec<u8> = 1.0f32.to_le_bytes().to_vec();
        let err = |b: &[u8]| format!("{:#}", parse(b).unwrap_err());
        assert!(err(b"hello").contains("not a .npy file"));
        assert!(err(&npy("<i8", false, "(1,)", &[0; 8])).contains("'<i8'"));
        assert!(err(&npy("<f4", false, "(2,)", &four)).contains("truncated"));
        assert!(err(&npy("<f4", false, "(1,)", &[0; 8])).contains("unexpected bytes"));
        assert!(err(&npy("<f4", false, "(4611686018427387904, 8)", &four)).contains("large"));
        assert!(err(&npy("<f4", false, "(1,", &four)).contains("header"));
        let mut cut = npy("<f4", false, "(1,)", &four);
        cut.truncate(20);
        assert!(err(&cut).contains("ends inside its header"));
    }

    #[test]
    fn hostile_headers_are_bounded() {
        let four: Vec<u8> = 1.0f32.to_le_bytes().to_vec();
        let err = |b: &[u8]| format!("{:#}", parse(b).unwrap_err());
        // Nesting that would overflow a recursive parser's stack.
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let mut v2 = MAGIC.to_vec();
        v2.extend_from_slice(&[2, 0]);
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {deep}, }}\n");
        v2.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        v2.extend_from_slice(dict.as_bytes());
        assert!(err(&v2).contains("over 65536 bytes"), "{}", err(&v2));
        let deep = format!("{}1{}", "(".repeat(1000), ")".repeat(1000));
        let e = err(&npy("<f4", false, &deep, &four));
        assert!(e.contains("deeper than 32 levels"), "{e}");
        // A long value is quoted in part only.
        let e = err(&npy(&"x".repeat(40_000), false, "(1,)", &four));
        assert!(e.len() < 300 && e.contains('…'), "{e}");
    }

    #[test]
    fn float64_beyond_float32_names_its_index() {
        let data: Vec<u8> = [1.0f64, 2.0, 3.0, 1e300, f64::INFINITY, 6.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let e = format!(
            "{:#}",
            parse(&npy("<f8", false, "(2, 3)", &data)).unwrap_err()
        );
        assert!(
            e.contains("1e300") && e.contains("[1, 0]") && e.contains("float32 range"),
            "{e}"
        );
        // Fortran order: the fourth value in the file is row 1, column 1.
        let e = format!(
            "{:#}",
            parse(&npy("<f8", true, "(2, 3)", &data)).unwrap_err()
        );
        assert!(e.contains("[1, 1]"), "{e}");
        // A stored infinity stays one (the library names it as a non-finite logit).
        let data: Vec<u8> = [1.0f64, f64::INFINITY]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert!(parse(&npy("<f8", false, "(2,)", &data)).unwrap().data[1].is_infinite());
    }

    #[test]
    fn scalar_and_empty_shapes() {
        let a = parse(&npy("<f4", false, "()", &2.5f32.to_le_bytes())).unwrap();
        assert_eq!((a.shape.len(), a.data), (0, vec![2.5]));
        let a = parse(&npy("<f4", false, "(0, 3)", &[])).unwrap();
        assert_eq!((a.shape, a.data.len()), (vec![0, 3], 0));
    }
}
