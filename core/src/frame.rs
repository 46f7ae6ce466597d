//! Framing: `length:u32 opcode:u16 payload`, big-endian.
//!
//! The [`Decoder`] is incremental and copies only what it must: a frame that
//! lies whole in the input is handed out as a view into the input; only the
//! tail of a frame split across reads is kept, in a buffer that lives as long
//! as the connection. Past warm-up, decoding does not allocate.

use crate::error::FrameError;
use crate::limits::{FRAME_HEADER_LEN, FRAME_LENGTH_MIN, OPCODE_LEN};

/// One frame: its opcode and a borrowed view of its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The opcode.
    pub opcode: u16,
    /// The payload: everything after the opcode.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The frame from its body (opcode and payload, without the length).
    fn from_body(body: &'a [u8]) -> Frame<'a> {
        debug_assert!(body.len() >= OPCODE_LEN);
        Frame {
            opcode: u16::from_be_bytes([body[0], body[1]]),
            payload: &body[OPCODE_LEN..],
        }
    }

    /// Bytes of the whole frame on the wire.
    pub fn wire_len(&self) -> usize {
        FRAME_HEADER_LEN + OPCODE_LEN + self.payload.len()
    }
}

/// Incremental frame decoder for one connection.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The head of a frame that is not complete yet.
    partial: Vec<u8>,
    /// `partial` holds a frame that was handed out: clear it before use.
    partial_consumed: bool,
    /// A framing error was returned: the stream cannot be resynchronised.
    failed: bool,
    max_frame: u32,
}

impl Decoder {
    /// A decoder refusing frames whose length field exceeds `max_frame`.
    pub fn new(max_frame: u32) -> Decoder {
        assert!(
            max_frame >= FRAME_LENGTH_MIN,
            "max_frame {max_frame} leaves no room for an opcode"
        );
        Decoder {
            partial: Vec::new(),
            partial_consumed: false,
            failed: false,
            max_frame,
        }
    }

    /// The frames in `input`, following what earlier calls left buffered.
    ///
    /// Drain the returned cursor with [`Frames::next`] until it returns
    /// `None`; bytes not consumed by then are kept for the next call.
    pub fn frames<'d>(&'d mut self, input: &'d [u8]) -> Frames<'d> {
        Frames {
            decoder: self,
            input,
            pos: 0,
        }
    }

    /// Bytes held back from earlier input (an incomplete frame).
    pub fn buffered(&self) -> usize {
        if self.partial_consumed {
            0
        } else {
            self.partial.len()
        }
    }

    /// Whether a framing error ended the stream.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    fn check(&mut self, length: u32) -> Result<usize, FrameError> {
        let verdict = if length < FRAME_LENGTH_MIN {
            Err(FrameError::TooShort { length })
        } else if length > self.max_frame {
            Err(FrameError::TooLarge {
                length,
                max: self.max_frame,
            })
        } else {
            Ok(FRAME_HEADER_LEN + length as usize)
        };
        if verdict.is_err() {
            self.failed = true;
            self.partial.clear();
        }
        verdict
    }
}

/// A cursor over the frames of one input chunk. See [`Decoder::frames`].
#[derive(Debug)]
pub struct Frames<'d> {
    decoder: &'d mut Decoder,
    input: &'d [u8],
    pos: usize,
}

impl Frames<'_> {
    /// The next complete frame, `None` when the input is used up (its tail is
    /// buffered), or the framing error that ends the stream.
    #[allow(clippy::should_implement_trait)] // a lending iterator: frames borrow the cursor
    pub fn next(&mut self) -> Option<Result<Frame<'_>, FrameError>> {
        if self.decoder.failed {
            return None;
        }
        if self.decoder.partial_consumed {
            self.decoder.partial.clear();
            self.decoder.partial_consumed = false;
        }
        if !self.decoder.partial.is_empty() {
            return self.next_from_partial();
        }
        let rest = &self.input[self.pos..];
        if rest.len() < FRAME_HEADER_LEN {
            self.decoder.partial.extend_from_slice(rest);
            self.pos = self.input.len();
            return None;
        }
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let total = match self.decoder.check(length) {
            Ok(total) => total,
            Err(e) => return Some(Err(e)),
        };
        if rest.len() < total {
            self.decoder.partial.extend_from_slice(rest);
            self.pos = self.input.len();
            return None;
        }
        self.pos += total;
        Some(Ok(Frame::from_body(&rest[FRAME_HEADER_LEN..total])))
    }

    fn next_from_partial(&mut self) -> Option<Result<Frame<'_>, FrameError>> {
        let partial = &mut self.decoder.partial;
        if partial.len() < FRAME_HEADER_LEN {
            let take = (FRAME_HEADER_LEN - partial.len()).min(self.input.len() - self.pos);
            partial.extend_from_slice(&self.input[self.pos..self.pos + take]);
            self.pos += take;
            if partial.len() < FRAME_HEADER_LEN {
                return None;
            }
        }
        let length = u32::from_be_bytes([partial[0], partial[1], partial[2], partial[3]]);
        let total = match self.decoder.check(length) {
            Ok(total) => total,
            Err(e) => return Some(Err(e)),
        };
        let partial = &mut self.decoder.partial;
        let take = (total - partial.len()).min(self.input.len() - self.pos);
        partial.extend_from_slice(&self.input[self.pos..self.pos + take]);
        self.pos += take;
        if partial.len() < total {
            return None;
        }
        self.decoder.partial_consumed = true;
        Some(Ok(Frame::from_body(
            &self.decoder.partial[FRAME_HEADER_LEN..total],
        )))
    }
}

/// Appends one frame to an output buffer; the length is patched in by
/// [`FrameWriter::finish`]. The buffer is reused: no allocation once it has
/// grown to its working size.
#[derive(Debug)]
pub struct FrameWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> FrameWriter<'a> {
    /// Starts a frame with `opcode` at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>, opcode: u16) -> FrameWriter<'a> {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        out.extend_from_slice(&opcode.to_be_bytes());
        FrameWriter { out, start }
    }

    /// Appends a byte.
    pub fn put_u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    /// Appends a big-endian `u16`.
    pub fn put_u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian `u32`.
    pub fn put_u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian `i64` (two's complement).
    pub fn put_i64(&mut self, v: i64) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian `u64`.
    pub fn put_u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends raw bytes.
    pub fn put_slice(&mut self, v: &[u8]) -> &mut Self {
        self.out.extend_from_slice(v);
        self
    }

    /// Patches the length field; returns the frame's size on the wire.
    pub fn finish(self) -> usize {
        let total = self.out.len() - self.start;
        let length = u32::try_from(total - FRAME_HEADER_LEN).expect("frame length fits in u32");
        self.out[self.start..self.start + FRAME_HEADER_LEN].copy_from_slice(&length.to_be_bytes());
        total
    }
}

/// Encodes one frame with `opcode` and `payload` at the end of `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u16, payload: &[u8]) -> usize {
    let mut w = FrameWriter::new(out, opcode);
    w.put_slice(payload);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(decoder: &mut Decoder, input: &[u8]) -> Vec<Result<(u16, Vec<u8>), FrameError>> {
        let mut got = Vec::new();
        let mut frames = decoder.frames(input);
        while let Some(item) = frames.next() {
            got.push(item.map(|f| (f.opcode, f.payload.to_vec())));
        }
        got
    }

    #[test]
    fn a_whole_frame_is_decoded_in_place() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, 7, b"abc");
        assert_eq!(wire, [0, 0, 0, 5, 0, 7, b'a', b'b', b'c']);
        let mut d = Decoder::new(64);
        assert_eq!(collect(&mut d, &wire), vec![Ok((7, b"abc".to_vec()))]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn a_frame_split_byte_by_byte_comes_out_once() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, 20050, &[9; 48]);
        let mut d = Decoder::new(64);
        let mut got = Vec::new();
        for b in &wire {
            got.extend(collect(&mut d, std::slice::from_ref(b)));
        }
        assert_eq!(got, vec![Ok((20050, vec![9; 48]))]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn length_below_two_is_too_short_and_ends_the_stream() {
        let mut d = Decoder::new(64);
        let got = collect(&mut d, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 1]);
        assert_eq!(got, vec![Err(FrameError::TooShort { length: 1 })]);
        assert!(d.has_failed());
        assert!(collect(&mut d, &[0, 0, 0, 2, 0, 1]).is_empty());
    }

    #[test]
    fn length_above_max_is_too_large_even_when_split() {
        let mut d = Decoder::new(64);
        assert!(collect(&mut d, &[0, 0]).is_empty());
        let got = collect(&mut d, &[0, 65, 0, 1]);
        assert_eq!(
            got,
            vec![Err(FrameError::TooLarge {
                length: 65,
                max: 64
            })]
        );
    }

    #[test]
    fn length_exactly_max_is_accepted() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, 1, &[0; 62]);
        let mut d = Decoder::new(64);
        assert_eq!(collect(&mut d, &wire).len(), 1);
    }
}
