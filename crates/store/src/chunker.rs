use std::io::{self, Read};

use std::borrow::Cow;

use fastcdc::v2020::{Normalization, cut_gear, get_gear_with_seed, select_masks};

use crate::config::ChunkerConfig;

/// Cuts byte streams into content-defined chunks. One chunker is kept per
/// thread and reused for every file, so its buffer is allocated once.
///
/// fastcdc's own `StreamCDC` shifts its whole buffer down after every chunk;
/// this reads two maximum-sized chunks at a time and runs the slice cutter
/// over them, carrying only the unfinished tail forward. The cut points are
/// identical: a cut found before the end of the buffer does not depend on the
/// bytes after it, and the chunk that reaches the end is cut again once more
/// data is in.
#[derive(Debug)]
pub struct Chunker {
    config: ChunkerConfig,
    /// fastcdc's strict and relaxed masks for the configured average.
    masks: (u64, u64),
    /// The gear tables: fastcdc's own, or drawn from an encrypted store's
    /// secret seed so cut points cannot be predicted from known content.
    gear: (Cow<'static, [u64]>, Cow<'static, [u64]>),
    buffer: Vec<u8>,
    /// Bytes of `buffer` holding data.
    filled: usize,
    /// Start of the first byte not yet handed out.
    start: usize,
    eof: bool,
}

/// The chunks of one stream, borrowed from a [`Chunker`].
#[derive(Debug)]
pub struct Chunks<'a, R> {
    chunker: &'a mut Chunker,
    source: R,
}

impl<R: Read> Iterator for Chunks<'_, R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.chunker.next_chunk(&mut self.source).transpose()
    }
}

impl Chunker {
    pub fn new(config: ChunkerConfig) -> Self {
        Self::with_seed(config, 0)
    }

    pub fn with_seed(config: ChunkerConfig, seed: u64) -> Self {
        let level = match config.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        };
        Self {
            config,
            masks: select_masks(config.avg_size as usize, level),
            gear: get_gear_with_seed(seed),
            buffer: Vec::new(),
            filled: 0,
            start: 0,
            eof: false,
        }
    }

    /// Starts on a new stream.
    pub fn chunks<R: Read>(&mut self, source: R) -> Chunks<'_, R> {
        self.filled = 0;
        self.start = 0;
        self.eof = false;
        Chunks {
            chunker: self,
            source,
        }
    }

    fn next_chunk(&mut self, source: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
        let max = self.config.max_size as usize;
        if self.filled - self.start < max && !self.eof {
            self.refill(source)?;
        }
        let remaining = self.filled - self.start;
        if remaining == 0 {
            return Ok(None);
        }
        let len = self.cut(&self.buffer[self.start..self.filled]);
        let chunk = self.buffer[self.start..self.start + len].to_vec();
        self.start += len;
        Ok(Some(chunk))
    }

    fn cut(&self, data: &[u8]) -> usize {
        let c = &self.config;
        if data.len() <= c.min_size as usize {
            return data.len();
        }
        let (mask_s, mask_l) = self.masks;
        let (_, len) = cut_gear(
            data,
            c.min_size as usize,
            c.avg_size as usize,
            c.max_size as usize,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
            &self.gear.0,
            &self.gear.1,
        );
        len
    }

    /// Moves the unread tail to the front and reads until the buffer holds
    /// two maximum-sized chunks or the stream ends.
    fn refill(&mut self, source: &mut impl Read) -> io::Result<()> {
        let capacity = 2 * self.config.max_size as usize;
        if self.buffer.len() < capacity {
            self.buffer.resize(capacity, 0);
        }
        self.buffer.copy_within(self.start..self.filled, 0);
        self.filled -= self.start;
        self.start = 0;
        while self.filled < capacity {
            match source.read(&mut self.buffer[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_CHUNKER;
    use fastcdc::v2020::FastCDC;

    fn small() -> ChunkerConfig {
        ChunkerConfig {
            min_size: 2048,
            avg_size: 8192,
            max_size: 32768,
            ..DEFAULT_CHUNKER
        }
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn chunks(data: &[u8], config: ChunkerConfig) -> Vec<Vec<u8>> {
        let mut chunker = Chunker::new(config);
        chunker
            .chunks(data)
            .collect::<io::Result<_>>()
            .expect("read from a slice")
    }

    #[test]
    fn cuts_like_fastcdc_on_the_whole_slice() {
        let data = noise(1_000_000, 1);
        let config = small();
        let expected: Vec<usize> =
            FastCDC::with_level(&data, 2048, 8192, 32768, Normalization::Level1)
                .map(|c| c.length)
                .collect();
        let got: Vec<usize> = chunks(&data, config).iter().map(Vec::len).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn concatenation_is_the_input_and_sizes_are_bounded() {
        let data = noise(300_000, 2);
        let pieces = chunks(&data, small());
        assert_eq!(pieces.concat(), data);
        let (last, body) = pieces.split_last().expect("chunks");
        assert!(body.iter().all(|c| (2048..=32768).contains(&c.len())));
        assert!(last.len() <= 32768);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunks(&[], small()).is_empty());
    }
}
