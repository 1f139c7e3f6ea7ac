//! The Descriptors section (kind 1): the segment's probe-major descriptor matrix, `num_probes`
//! rows of `param` (the stride) elements, f32 or f16, of which the first `entry_count` are used.
//! The stride is a multiple of 32 elements, so that every row starts on a cache line.

use std::ops::Range;

use half::f16;

use super::{Dtype, SectionEntry, SegmentCounts, align_up};

/// Descriptor rows are padded to a multiple of this many elements (64 bytes of f16).
pub const STRIDE_MULTIPLE: u64 = 32;

/// Row stride in elements of a descriptor matrix holding `entries` columns.
pub fn stride(entries: u64) -> u64 {
    align_up(entries.max(1), STRIDE_MULTIPLE).expect("entry count far below u64::MAX")
}

/// Appends one encoded row to `out`: the `values` of the used columns in `dtype`, then zeros up
/// to `stride` elements. `scratch` is reused between rows.
pub fn encode_row(
    values: &[f32],
    stride: usize,
    dtype: Dtype,
    scratch: &mut Vec<f16>,
    out: &mut Vec<u8>,
) {
    match dtype {
        Dtype::F32 => out.extend_from_slice(bytemuck::cast_slice(values)),
        Dtype::F16 => {
            scratch.clear();
            scratch.extend(values.iter().map(|&x| f16::from_f32(x)));
            out.extend_from_slice(bytemuck::cast_slice(scratch));
        }
    }
    out.resize(
        out.len() + (stride - values.len()) * dtype.size() as usize,
        0,
    );
}

/// The matrix of a segment in place, or `None` when its bytes are misaligned for `dtype`.
pub fn view(section: &[u8], dtype: Dtype, stride: u64, entries: u64) -> Option<DescriptorRows<'_>> {
    let data = match dtype {
        Dtype::F32 => RowData::F32(bytemuck::try_cast_slice(section).ok()?),
        Dtype::F16 => RowData::F16(bytemuck::try_cast_slice(section).ok()?),
    };
    Some(DescriptorRows {
        data,
        stride: stride as usize,
        entries: entries as usize,
    })
}

/// The length rule: a stride (a multiple of 32, at least the entry count) per probe.
pub fn required_len(s: &SectionEntry, c: &SegmentCounts) -> Result<Option<u64>, String> {
    if s.param < c.entries || !s.param.is_multiple_of(STRIDE_MULTIPLE) {
        return Err(format!(
            "descriptor stride {} does not hold {} entries",
            s.param, c.entries
        ));
    }
    Ok(u64::from(c.probes)
        .checked_mul(s.param)
        .and_then(|x| x.checked_mul(c.dtype.size())))
}

/// Descriptor values of one segment, probe-major.
#[derive(Debug, Clone, Copy)]
pub enum RowData<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

/// The probe-major descriptor matrix of one segment: `probes` rows of `stride` values, of which the
/// first `entries` are used.
#[derive(Debug, Clone, Copy)]
pub struct DescriptorRows<'a> {
    data: RowData<'a>,
    stride: usize,
    entries: usize,
}

impl<'a> DescriptorRows<'a> {
    pub fn entries(&self) -> usize {
        self.entries
    }
    pub fn data(&self) -> RowData<'a> {
        self.data
    }
    pub fn stride(&self) -> usize {
        self.stride
    }
    /// Row `p` restricted to entries `r`, as f32 when stored as f32.
    pub fn row_f32(&self, p: usize, r: Range<usize>) -> Option<&'a [f32]> {
        match self.data {
            RowData::F32(d) => Some(&d[p * self.stride + r.start..p * self.stride + r.end]),
            RowData::F16(_) => None,
        }
    }
    /// Row `p` restricted to entries `r`, as raw f16 bits when stored as f16.
    pub fn row_f16_bits(&self, p: usize, r: Range<usize>) -> Option<&'a [u16]> {
        match self.data {
            RowData::F16(d) => Some(bytemuck::cast_slice(
                &d[p * self.stride + r.start..p * self.stride + r.end],
            )),
            RowData::F32(_) => None,
        }
    }
    /// Copies row `p`, entries `r`, into `out` as f32.
    pub fn read_row(&self, p: usize, r: Range<usize>, out: &mut [f32]) {
        let (a, b) = (p * self.stride + r.start, p * self.stride + r.end);
        match self.data {
            RowData::F32(d) => out.copy_from_slice(&d[a..b]),
            RowData::F16(d) => {
                use half::slice::HalfFloatSliceExt;
                d[a..b].convert_to_f32_slice(out)
            }
        }
    }
    /// Asks the CPU to start loading value `(p, e)`, which a caller is about to read: in the
    /// probe-major layout each scattered read is a cache miss, and issuing them all before
    /// reading any lets them overlap. Out-of-range positions are skipped.
    #[inline]
    pub fn prefetch(&self, p: usize, e: usize) {
        let at = p.wrapping_mul(self.stride).wrapping_add(e);
        match self.data {
            RowData::F32(d) if at < d.len() => crate::prefetch::prefetch_read(&d[at]),
            RowData::F16(d) if at < d.len() => crate::prefetch::prefetch_read(&d[at]),
            _ => {}
        }
    }

    /// One value.
    pub fn value(&self, p: usize, e: usize) -> f32 {
        match self.data {
            RowData::F32(d) => d[p * self.stride + e],
            RowData::F16(d) => d[p * self.stride + e].to_f32(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_padded_to_the_stride_and_read_back_in_place() {
        for dtype in [Dtype::F32, Dtype::F16] {
            let s = stride(3) as usize;
            assert_eq!(s, 32);
            let (mut out, mut scratch) = (Vec::new(), Vec::new());
            encode_row(&[1.0, -2.0, 0.5], s, dtype, &mut scratch, &mut out);
            encode_row(&[3.0, 0.25, -1.0], s, dtype, &mut scratch, &mut out);
            assert_eq!(out.len(), 2 * s * dtype.size() as usize);
            // A 64-aligned copy, as sections are in a file.
            let aligned = crate::reader::AlignedBytes::from_slice(&out);
            let rows = view(aligned.as_ref(), dtype, s as u64, 3).unwrap();
            assert_eq!(rows.value(1, 1), 0.25);
            let mut row = [0f32; 3];
            rows.read_row(0, 0..3, &mut row);
            assert_eq!(row, [1.0, -2.0, 0.5]);
        }
    }
}
