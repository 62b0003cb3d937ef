//! A response body's streaming encoder: gzip, brotli or zstd, flushed after every piece so
//! the client gets each piece as soon as the backend sent it.

use super::negotiate::Coding;
use bytes::Bytes;
use std::io::{self, Write};

/// brotli's window: 2^19 bytes (512 KiB), as nginx's brotli module and pingora use; the
/// default 2^22 would cost 4 MiB a response in flight for little gain on web bodies.
const BROTLI_WINDOW_BITS: u32 = 19;
/// brotli's internal buffer, in bytes.
const BROTLI_BUFFER: usize = 4096;

/// One response's encoder. Each piece in gives its compressed bytes out at once (a sync
/// flush: gzip `Z_SYNC_FLUSH`, brotli `FLUSH`, zstd `ZSTD_e_flush`), so a streamed response
/// (server-sent events, NDJSON) keeps its timing; the last piece ends the stream.
pub enum Encoder {
    /// gzip, zlib-ng behind flate2.
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    /// brotli; None once finished (finishing consumes it).
    Brotli(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
    /// zstd.
    Zstd(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

impl Encoder {
    /// An encoder for `coding` at `level` (checked by the conf: gzip 1–9, br 0–11, zstd 1–22).
    pub fn new(coding: Coding, level: u32) -> io::Result<Encoder> {
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level),
            )),
            Coding::Brotli => Encoder::Brotli(Some(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                level,
                BROTLI_WINDOW_BITS,
            )))),
            Coding::Zstd => {
                let level = i32::try_from(level)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "zstd level"))?;
                Encoder::Zstd(Box::new(zstd::stream::write::Encoder::new(
                    Vec::new(),
                    level,
                )?))
            }
        })
    }

    /// Compresses `input` and hands back what is ready: everything so far (flushed), and the
    /// stream's end when `end`. After the end, more input is an error.
    pub fn encode(&mut self, input: &[u8], end: bool) -> io::Result<Bytes> {
        let out = match self {
            Encoder::Gzip(gz) => {
                gz.write_all(input)?;
                if end {
                    gz.try_finish()?;
                } else if !input.is_empty() {
                    gz.flush()?;
                }
                std::mem::take(gz.get_mut())
            }
            Encoder::Brotli(slot) => {
                let Some(br) = slot.as_mut() else {
                    return Err(io::Error::other("brotli stream already ended"));
                };
                br.write_all(input)?;
                if end {
                    // Finishing consumes the writer; what it writes is the rest of the stream.
                    match slot.take() {
                        Some(br) => br.into_inner(),
                        None => Vec::new(),
                    }
                } else {
                    if !input.is_empty() {
                        br.flush()?;
                    }
                    std::mem::take(br.get_mut())
                }
            }
            Encoder::Zstd(zs) => {
                zs.write_all(input)?;
                if end {
                    zs.do_finish()?;
                } else if !input.is_empty() {
                    zs.flush()?;
                }
                std::mem::take(zs.get_mut())
            }
        };
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Brotli => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Zstd => out = zstd::stream::decode_all(data).unwrap(),
        }
        out
    }

    #[test]
    fn pieces_come_out_at_once_and_the_whole_decodes() {
        let text: Vec<u8> = (0..2000)
            .flat_map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\"}},").into_bytes())
            .collect();
        for coding in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let mut encoder = Encoder::new(coding, 5).unwrap();
            let mut wire = Vec::new();
            for piece in text.chunks(7000) {
                let out = encoder.encode(piece, false).unwrap();
                assert!(!out.is_empty(), "{coding:?}: a piece is flushed at once");
                wire.extend_from_slice(&out);
            }
            wire.extend_from_slice(&encoder.encode(&[], true).unwrap());
            assert_eq!(decode(coding, &wire), text, "{coding:?}");
            assert!(wire.len() * 4 < text.len(), "{coding:?}: {}", wire.len());
        }
    }

    #[test]
    fn an_empty_body_is_a_valid_empty_stream() {
        for coding in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let mut encoder = Encoder::new(coding, 1).unwrap();
            let wire = encoder.encode(&[], true).unwrap();
            assert_eq!(decode(coding, &wire), b"", "{coding:?}");
        }
    }
}
