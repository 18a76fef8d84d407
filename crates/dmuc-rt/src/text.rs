//! Text without an allocator: a fixed-size buffer that `write!` formats into (truncating
//! when full), and bytes shown as they are.

use core::ffi::CStr;
use core::fmt;

/// A fixed-capacity byte buffer; formatting past its end is cut off, never an error.
#[derive(Clone)]
pub struct Buf<const N: usize> {
    b: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Buf { b: [0; N], len: 0 }
    }

    /// Appends bytes (as many as fit).
    pub fn push(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(N - self.len);
        self.b[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }

    /// The bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.b[..self.len]
    }

    /// The bytes so far, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.b[..self.len]
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The content as a C string (a NUL is put after it; `None` when there is no room or
    /// the content holds a NUL).
    pub fn c_str(&mut self) -> Option<&CStr> {
        if self.len >= N {
            return None;
        }
        self.b[self.len] = 0;
        CStr::from_bytes_with_nul(&self.b[..=self.len]).ok()
    }
}

impl<const N: usize> Default for Buf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PartialEq for Buf<N> {
    fn eq(&self, o: &Self) -> bool {
        self.bytes() == o.bytes()
    }
}

impl<const N: usize> fmt::Write for Buf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Shows bytes as they are where they are valid UTF-8, `\u{FFFD}` where not.
pub struct Lossy<'a>(pub &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn formats_and_truncates() {
        let mut b = Buf::<8>::new();
        write!(b, "run {}", 42).unwrap();
        assert_eq!(b.bytes(), b"run 42");
        write!(b, " and more").unwrap();
        assert_eq!(b.bytes(), b"run 42 a");
        assert!(b.c_str().is_none(), "no room for the NUL");
        let mut c = Buf::<8>::new();
        c.push(b"/a");
        assert_eq!(c.c_str().unwrap().to_bytes(), b"/a");
    }

    #[test]
    fn lossy_shows_invalid_bytes_as_replacement() {
        let mut b = Buf::<32>::new();
        write!(b, "{}", Lossy(b"a\xffb")).unwrap();
        assert_eq!(b.bytes(), "a\u{FFFD}b".as_bytes());
    }
}
