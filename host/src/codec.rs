//! The binary form of a checkpoint's parts: little-endian fixed-width
//! numbers, and byte strings as a `u32` length and the bytes. Each part
//! (keyed state, windows, dedup ids, ...) writes itself with [`Put`] and
//! reads itself back with a [`Reader`], which refuses a cut-short input
//! with the name of what it was reading.

use rust_decimal::Decimal;

/// Writing a checkpoint's values onto the end of a buffer.
pub trait Put {
    /// One byte.
    fn put_u8(&mut self, v: u8);
    /// A `u32`.
    fn put_u32(&mut self, v: u32);
    /// A `u64`.
    fn put_u64(&mut self, v: u64);
    /// An `i64`.
    fn put_i64(&mut self, v: i64);
    /// A `u128`.
    fn put_u128(&mut self, v: u128);
    /// An `f64`, bit for bit.
    fn put_f64(&mut self, v: f64);
    /// A decimal, exactly (its 16-byte form).
    fn put_decimal(&mut self, v: Decimal);
    /// Bytes, after their length.
    fn put_bytes(&mut self, v: &[u8]);
    /// Text, after its length.
    fn put_str(&mut self, v: &str) {
        self.put_bytes(v.as_bytes());
    }
    /// A count of items to follow.
    fn put_len(&mut self, n: usize) {
        self.put_u64(n as u64);
    }
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u128(&mut self, v: u128) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_f64(&mut self, v: f64) {
        self.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn put_decimal(&mut self, v: Decimal) {
        self.extend_from_slice(&v.serialize());
    }
    fn put_bytes(&mut self, v: &[u8]) {
        self.put_u32(v.len() as u32);
        self.extend_from_slice(v);
    }
}

/// Starts a section of `out`: its length goes where this returns, once
/// [`end_section`] knows it, so a reader can skip or measure the section.
pub fn start_section(out: &mut Vec<u8>) -> usize {
    out.put_u64(0);
    out.len()
}

/// Ends the section started at `at`.
pub fn end_section(out: &mut [u8], at: usize) {
    let n = (out.len() - at) as u64;
    out[at - 8..at].copy_from_slice(&n.to_le_bytes());
}

/// Reads values written by [`Put`] from the front of a byte slice.
#[derive(Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
    /// What is being read, for the error of a cut-short input.
    what: &'static str,
}

/// Why a checkpoint's part could not be read.
pub type Error = String;

impl<'a> Reader<'a> {
    /// A reader of `bytes`, which hold `what` (named in errors).
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { rest: bytes, what }
    }

    /// Names what the following values are, for errors.
    pub fn reading(&mut self, what: &'static str) {
        self.what = what;
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.rest.len() < n {
            return Err(format!(
                "{} cut short: {n} bytes wanted, {} left",
                self.what,
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let bytes = self.take(N)?;
        Ok(bytes.try_into().unwrap_or([0; N]))
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32, Error> {
        self.array().map(u32::from_le_bytes)
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64, Error> {
        self.array().map(u64::from_le_bytes)
    }

    /// An `i64`.
    pub fn i64(&mut self) -> Result<i64, Error> {
        self.array().map(i64::from_le_bytes)
    }

    /// A `u128`.
    pub fn u128(&mut self) -> Result<u128, Error> {
        self.array().map(u128::from_le_bytes)
    }

    /// An `f64`.
    pub fn f64(&mut self) -> Result<f64, Error> {
        self.array().map(u64::from_le_bytes).map(f64::from_bits)
    }

    /// A decimal.
    pub fn decimal(&mut self) -> Result<Decimal, Error> {
        self.array().map(Decimal::deserialize)
    }

    /// Bytes written with [`Put::put_bytes`].
    pub fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u32()?;
        self.take(n as usize)
    }

    /// Text written with [`Put::put_str`].
    pub fn str(&mut self) -> Result<&'a str, Error> {
        let what = self.what;
        std::str::from_utf8(self.bytes()?).map_err(|_| format!("{what}: text is not UTF-8"))
    }

    /// A section written between [`start_section`] and [`end_section`],
    /// as a reader of its own, holding `what`.
    pub fn section(&mut self, what: &'static str) -> Result<Reader<'a>, Error> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| format!("{what}: section too long"))?;
        Ok(Reader::new(self.take(n)?, what))
    }

    /// A count written with [`Put::put_len`], checked against what is
    /// left: each item takes at least `min_item` bytes, so a damaged
    /// count cannot make the reader reserve more than the input holds.
    pub fn len(&mut self, min_item: usize) -> Result<usize, Error> {
        let n = self.u64()?;
        if n.saturating_mul(min_item.max(1) as u64) > self.rest.len() as u64 {
            return Err(format!(
                "{}: {n} items cannot fit in the {} bytes left",
                self.what,
                self.rest.len()
            ));
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_as_written_and_a_cut_is_named() {
        let mut out = Vec::new();
        out.put_u8(7);
        out.put_i64(-5);
        out.put_f64(0.25);
        out.put_decimal(Decimal::new(-12345, 3));
        out.put_str("héllo");
        out.put_len(2);
        out.put_u128(u128::MAX - 1);
        let mut r = Reader::new(&out, "test values");
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.f64().unwrap(), 0.25);
        assert_eq!(r.decimal().unwrap().to_string(), "-12.345");
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.len(8).unwrap(), 2);
        assert_eq!(r.u128().unwrap(), u128::MAX - 1);
        assert!(r.is_empty());
        let mut cut = Reader::new(&out[..5], "windows");
        cut.u8().unwrap();
        assert_eq!(
            cut.i64().unwrap_err(),
            "windows cut short: 8 bytes wanted, 4 left"
        );
        let mut nested = vec![1];
        let at = start_section(&mut nested);
        nested.put_str("inside");
        end_section(&mut nested, at);
        nested.put_u8(9);
        let mut r = Reader::new(&nested[1..], "outer");
        assert_eq!(r.section("inner").unwrap().str().unwrap(), "inside");
        assert_eq!(r.u8().unwrap(), 9);
        let mut huge = Vec::new();
        huge.put_len(1 << 40);
        let error = Reader::new(&huge, "ids").len(16).unwrap_err();
        assert!(error.contains("cannot fit"), "{error}");
    }
}
