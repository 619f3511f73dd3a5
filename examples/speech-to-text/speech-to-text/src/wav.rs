//! Just enough of WAV for the recogniser: reads 16-bit PCM (mono, stereo or
//! more channels, any sample rate) and writes the 16 kHz mono 16-bit PCM
//! that pocketsphinx's US English model expects.

use std::fmt;

/// The sample rate of the recogniser's acoustic model.
pub const MODEL_SAMPLE_RATE: u32 = 16_000;

/// Audio read from a WAV file.
#[derive(Debug)]
pub struct Audio {
    sample_rate: u32,
    channels: usize,
    /// Interleaved samples, a whole number of frames.
    samples: Vec<i16>,
}

/// Why bytes are not a WAV file this function can read.
#[derive(Debug)]
pub struct NotWav(String);

impl fmt::Display for NotWav {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn not_wav(reason: impl Into<String>) -> NotWav {
    NotWav(reason.into())
}

/// Reads a RIFF/WAVE file of 16-bit PCM samples.
pub fn decode(bytes: &[u8]) -> Result<Audio, NotWav> {
    if bytes.is_empty() {
        return Err(not_wav("the body is empty"));
    }
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(not_wav("it does not start with a RIFF/WAVE header"));
    }
    let mut format = None;
    let mut rest = &bytes[12..];
    while rest.len() >= 8 {
        let id = &rest[0..4];
        let body = &rest[8..];
        // Writers that stream (to a pipe, say) declare more than they wrote.
        let size = (u32_at(rest, 4) as usize).min(body.len());
        let chunk = &body[..size];
        match id {
            b"fmt " => format = Some(Format::parse(chunk)?),
            b"data" => {
                let format =
                    format.ok_or_else(|| not_wav("its data chunk comes before its fmt chunk"))?;
                return format.audio(chunk);
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        rest = &body[(size + (size & 1)).min(body.len())..];
    }
    Err(not_wav(if format.is_none() {
        "it has no fmt chunk"
    } else {
        "it has no data chunk"
    }))
}

/// The `fmt ` chunk, checked.
#[derive(Debug, Clone, Copy)]
struct Format {
    sample_rate: u32,
    channels: usize,
}

impl Format {
    const PCM: u16 = 1;
    const EXTENSIBLE: u16 = 0xFFFE;

    fn parse(chunk: &[u8]) -> Result<Format, NotWav> {
        if chunk.len() < 16 {
            return Err(not_wav("its fmt chunk is too short"));
        }
        let mut tag = u16_at(chunk, 0);
        if tag == Self::EXTENSIBLE && chunk.len() >= 26 {
            // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the tag.
            tag = u16_at(chunk, 24);
        }
        let channels = usize::from(u16_at(chunk, 2));
        let sample_rate = u32_at(chunk, 4);
        let bits = u16_at(chunk, 14);
        if tag != Self::PCM {
            return Err(not_wav(format!(
                "its samples are not PCM (format tag {tag})"
            )));
        }
        if bits != 16 {
            return Err(not_wav(format!("its samples have {bits} bits, not 16")));
        }
        if channels == 0 || sample_rate == 0 {
            return Err(not_wav(
                "its fmt chunk declares no channels or no sample rate",
            ));
        }
        Ok(Format {
            sample_rate,
            channels,
        })
    }

    fn audio(self, data: &[u8]) -> Result<Audio, NotWav> {
        let frame_bytes = 2 * self.channels;
        let whole = data.len() - data.len() % frame_bytes;
        if whole == 0 {
            return Err(not_wav("it holds no audio"));
        }
        let samples = data[..whole]
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        Ok(Audio {
            sample_rate: self.sample_rate,
            channels: self.channels,
            samples,
        })
    }
}

impl Audio {
    /// The audio as the model wants it: the channels mixed to one, and
    /// resampled to [`MODEL_SAMPLE_RATE`] by linear interpolation.
    pub fn to_model_format(&self) -> Vec<i16> {
        let mono: Vec<f64> = self
            .samples
            .chunks_exact(self.channels)
            .map(|frame| frame.iter().map(|&s| f64::from(s)).sum::<f64>() / frame.len() as f64)
            .collect();
        resample(&mono, self.sample_rate, MODEL_SAMPLE_RATE)
            .into_iter()
            // In range already: a convex combination of i16 samples.
            .map(|sample| sample.round() as i16)
            .collect()
    }
}

/// Linear interpolation between the two nearest input samples.
fn resample(input: &[f64], from: u32, to: u32) -> Vec<f64> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let len = (input.len() as u64 * u64::from(to) / u64::from(from)).max(1) as usize;
    let step = f64::from(from) / f64::from(to);
    let last = input.len() - 1;
    (0..len)
        .map(|i| {
            let position = i as f64 * step;
            let index = (position as usize).min(last);
            let fraction = position - index as f64;
            let next = input[(index + 1).min(last)];
            input[index] + (next - input[index]) * fraction
        })
        .collect()
}

/// A 16-bit mono PCM WAV file of `samples` at `sample_rate`.
pub fn encode(samples: &[i16], sample_rate: u32) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&Format::PCM.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // channels
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // bytes per frame
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes([
        bytes[offset],
        bytes[offset + 1],
        bytes[offset + 2],
        bytes[offset + 3],
    ])
}
