//! [`LineSplitter`]: whole lines out of a byte stream that arrives in arbitrary pieces
//! (whatever one `read` of a pipe returned), sans-IO.
//!
//! A line is everything up to a `\n` (which is not part of it). A line longer than
//! [`MAX_LINE`] bytes is cut into pieces of at most that size, each piece a [`Line`] that
//! says on which side it was cut, so that the sink can mark the cut (`…`) and a reader
//! can tell a cut from a real line end. A cut falls on a UTF-8 character boundary when the
//! bytes are UTF-8, so each piece stays valid text. At end of stream, [`LineSplitter::finish`]
//! hands out the unterminated last line.

/// The longest line passed on whole; longer ones are cut into pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// One line, or one piece of a line longer than [`MAX_LINE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The bytes, without the `\n`.
    pub text: &'a [u8],
    /// A piece after a cut: the line began in an earlier piece.
    pub starts_mid_line: bool,
    /// Cut here: the line goes on in the next piece.
    pub ends_mid_line: bool,
}

/// Splits a byte stream into [`Line`]s, holding at most [`MAX_LINE`] bytes of an
/// unfinished line between calls.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// The unfinished line so far (never more than `MAX_LINE` bytes).
    partial: Vec<u8>,
    /// `partial` continues a line that was already cut.
    after_cut: bool,
}

impl LineSplitter {
    /// An empty splitter.
    pub fn new() -> LineSplitter {
        LineSplitter::default()
    }

    /// Takes the next bytes of the stream; `emit` gets every line they complete (and every
    /// piece cut from a line that grew past [`MAX_LINE`]), in order.
    pub fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(Line<'_>)) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.take(&bytes[..end], true, &mut emit);
            bytes = &bytes[end + 1..];
        }
        self.take(bytes, false, &mut emit);
    }

    /// The stream ended: `emit` gets the unterminated last line, if there is one.
    pub fn finish(&mut self, mut emit: impl FnMut(Line<'_>)) {
        if !self.partial.is_empty() {
            emit(Line {
                text: &self.partial,
                starts_mid_line: self.after_cut,
                ends_mid_line: false,
            });
        }
        self.partial.clear();
        self.after_cut = false;
    }

    /// Bytes of an unfinished line held.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Adds `segment` (no `\n` in it) to the current line; `ends` if a `\n` followed it.
    fn take(&mut self, mut segment: &[u8], ends: bool, emit: &mut impl FnMut(Line<'_>)) {
        loop {
            let room = MAX_LINE - self.partial.len();
            if segment.len() <= room {
                if !ends {
                    self.partial.extend_from_slice(segment);
                    return;
                }
                self.emit(segment, false, emit);
                return;
            }
            let cut = char_boundary(segment, room);
            self.emit(&segment[..cut], true, emit);
            segment = &segment[cut..];
        }
    }

    /// Emits `partial` + `tail` as one line (or piece), and starts the next one.
    fn emit(&mut self, tail: &[u8], cut: bool, emit: &mut impl FnMut(Line<'_>)) {
        let line = |text| Line {
            text,
            starts_mid_line: self.after_cut,
            ends_mid_line: cut,
        };
        if self.partial.is_empty() {
            emit(line(tail)); // the common case: no copy
        } else {
            self.partial.extend_from_slice(tail);
            emit(line(&self.partial));
            self.partial.clear();
        }
        self.after_cut = cut;
    }
}

/// Where to cut `bytes` to keep at most `max` of them: `max`, or the start of the UTF-8
/// character that would straddle it (never 0, so that cutting always progresses).
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    for back in 1..=3 {
        let Some(start) = max.checked_sub(back) else {
            break;
        };
        let len = match bytes[start] {
            0x80..=0xbf => continue, // inside a character: its lead byte is further back
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if start + len > max && start > 0 {
            start
        } else {
            max
        };
    }
    max // not UTF-8 here: any cut is as good
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `chunks` make, as (text, starts_mid_line, ends_mid_line), with the
    /// unterminated rest at the end.
    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool, bool)> {
        let mut out = Vec::new();
        let mut splitter = LineSplitter::new();
        let mut collect = |l: Line<'_>| {
            out.push((l.text.to_vec(), l.starts_mid_line, l.ends_mid_line));
        };
        for chunk in chunks {
            splitter.feed(chunk, &mut collect);
        }
        splitter.finish(&mut collect);
        out
    }

    fn whole(text: &str) -> (Vec<u8>, bool, bool) {
        (text.as_bytes().to_vec(), false, false)
    }

    #[test]
    fn lines_are_whole_however_the_bytes_arrive() {
        let text = b"one\ntwo\n\nthree and a half\nfour";
        let want = vec![
            whole("one"),
            whole("two"),
            whole(""),
            whole("three and a half"),
            whole("four"),
        ];
        assert_eq!(split(&[text]), want);
        // Every way of cutting the stream in two, and byte by byte.
        for at in 0..text.len() {
            assert_eq!(split(&[&text[..at], &text[at..]]), want, "cut at {at}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(split(&bytes), want);
    }

    #[test]
    fn the_unterminated_last_line_comes_out_at_the_end_only() {
        let mut splitter = LineSplitter::new();
        let mut seen = 0;
        splitter.feed(b"no newline yet", |_| seen += 1);
        assert_eq!((seen, splitter.pending()), (0, 14));
        splitter.finish(|l| {
            assert_eq!(l.text, b"no newline yet");
            seen += 1;
        });
        assert_eq!((seen, splitter.pending()), (1, 0));
        splitter.finish(|_| seen += 1);
        assert_eq!(seen, 1, "nothing twice");
    }

    #[test]
    fn a_line_of_exactly_max_line_bytes_is_not_cut() {
        let line = vec![b'x'; MAX_LINE];
        let got = split(&[&line, b"\n"]);
        assert_eq!(got, vec![(line, false, false)]);
    }

    #[test]
    fn a_long_line_is_cut_into_marked_pieces_of_max_line_bytes() {
        let mut long = vec![b'a'; MAX_LINE];
        long.extend(vec![b'b'; MAX_LINE]);
        long.extend(b"cc");
        let mut stream = long.clone();
        stream.extend(b"\nnext\n");
        for chunks in [vec![&stream[..]], stream.chunks(1000).collect::<Vec<_>>()] {
            let got = split(&chunks);
            assert_eq!(got.len(), 4);
            assert_eq!(got[0], (vec![b'a'; MAX_LINE], false, true));
            assert_eq!(got[1], (vec![b'b'; MAX_LINE], true, true));
            assert_eq!(got[2], (b"cc".to_vec(), true, false));
            assert_eq!(got[3], whole("next"));
        }
    }

    #[test]
    fn a_cut_never_splits_a_utf8_character() {
        // 'é' is two bytes: one of them would straddle the cut at MAX_LINE.
        let mut long = vec![b'x'; MAX_LINE - 1];
        long.extend("é and more".as_bytes());
        let got = split(&[&long]);
        assert_eq!(got[0].0.len(), MAX_LINE - 1);
        assert!(std::str::from_utf8(&got[0].0).is_ok());
        assert_eq!(got[1].0, "é and more".as_bytes());
        // Not UTF-8 at all: cut at MAX_LINE regardless.
        let binary = vec![0x80u8; MAX_LINE + 5];
        let got = split(&[&binary]);
        assert_eq!(got[0].0.len(), MAX_LINE);
        assert_eq!(got[1].0.len(), 5);
    }
}
