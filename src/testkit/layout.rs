//! The byte layout that corruption tests and the fuzz harness patch: field offsets of the static
//! header, the commit slots and the segment directory, and the integer helpers. Not public API:
//! the library's own code reaches them through the codecs of `crate::format`.

pub use crate::format::bytes::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
pub use crate::format::directory::{
    D_ENTRY_COUNT, D_FIRST_ENTRY, D_FIRST_MODEL, D_LEN, D_MAGIC, D_MODEL_COUNT, D_NUMBER,
    D_PREV_CRC, D_PREV_LEN, D_PREV_OFFSET, D_RESERVED, D_SECTION_COUNT, D_SECTIONS, DIR_MAGIC,
    S_CRC, S_KIND, S_LEN, S_OFFSET, S_PARAM, SECTION_ENTRY_LEN,
};
pub use crate::format::header::{
    C_COMMITTED_LEN, C_CRC, C_DIR_CRC, C_DIR_LEN, C_DIR_OFFSET, C_ENTRY_COUNT, C_MODEL_COUNT,
    C_RESERVED0, C_RESERVED1, C_SEGMENT_COUNT, C_SEQUENCE, H_CRC, H_DTYPE, H_FINGERPRINT, H_FLAGS,
    H_HEADER_PAGE_LEN, H_MAGIC, H_NUM_PROBES, H_RESERVED, H_VERSION, HEADER_USED_LEN, SLOT_LEN,
    SLOT_OFFSETS, STATIC_HEADER_LEN,
};
pub use crate::format::{
    ALIGN, CommitRecord, Extent, HEADER_PAGE_LEN, MAGIC, MAX_PROBES, MAX_SECTIONS, MIN_PROBES,
    SectionEntry, SectionKind, SegmentDirectory, SlotState, StaticHeader,
};
