//! Element types that can appear in a `.pt` / `.npy` shard, named as torch names them.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    C64,
    C128,
    U16,
    U32,
    U64,
    F8E4M3FN,
    F8E5M2,
    F8E4M3FNUZ,
    F8E5M2FNUZ,
    F8E8M0FNU,
}

pub const ALL: [DType; 20] = [
    DType::F32,
    DType::F64,
    DType::F16,
    DType::BF16,
    DType::I64,
    DType::I32,
    DType::I16,
    DType::I8,
    DType::U8,
    DType::Bool,
    DType::C64,
    DType::C128,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::F8E4M3FN,
    DType::F8E5M2,
    DType::F8E4M3FNUZ,
    DType::F8E5M2FNUZ,
    DType::F8E8M0FNU,
];

impl DType {
    /// The attribute name in the `torch` module (`torch.<name>`).
    pub fn torch_name(self) -> &'static str {
        use DType::*;
        match self {
            F32 => "float32",
            F64 => "float64",
            F16 => "float16",
            BF16 => "bfloat16",
            I64 => "int64",
            I32 => "int32",
            I16 => "int16",
            I8 => "int8",
            U8 => "uint8",
            Bool => "bool",
            C64 => "complex64",
            C128 => "complex128",
            U16 => "uint16",
            U32 => "uint32",
            U64 => "uint64",
            F8E4M3FN => "float8_e4m3fn",
            F8E5M2 => "float8_e5m2",
            F8E4M3FNUZ => "float8_e4m3fnuz",
            F8E5M2FNUZ => "float8_e5m2fnuz",
            F8E8M0FNU => "float8_e8m0fnu",
        }
    }

    /// Floating point or complex: the dtypes torch lets require gradients.
    pub fn can_require_grad(self) -> bool {
        use DType::*;
        !matches!(self, I64 | I32 | I16 | I8 | U8 | U16 | U32 | U64 | Bool)
    }

    pub fn itemsize(self) -> usize {
        use DType::*;
        match self {
            F64 | I64 | U64 | C64 => 8,
            F32 | I32 | U32 => 4,
            F16 | BF16 | I16 | U16 => 2,
            C128 => 16,
            I8 | U8 | Bool | F8E4M3FN | F8E5M2 | F8E4M3FNUZ | F8E5M2FNUZ | F8E8M0FNU => 1,
        }
    }

    pub fn from_torch_name(name: &str) -> Option<DType> {
        ALL.iter().copied().find(|d| d.torch_name() == name)
    }

    /// `torch.<X>Storage` class name → dtype (torch's `_get_dtype_from_pickle_storage_type`).
    pub fn from_storage_name(name: &str) -> Option<DType> {
        use DType::*;
        Some(match name {
            "FloatStorage" => F32,
            "DoubleStorage" => F64,
            "HalfStorage" => F16,
            "BFloat16Storage" => BF16,
            "LongStorage" => I64,
            "IntStorage" => I32,
            "ShortStorage" => I16,
            "CharStorage" => I8,
            "ByteStorage" => U8,
            "BoolStorage" => Bool,
            "ComplexFloatStorage" => C64,
            "ComplexDoubleStorage" => C128,
            "UntypedStorage" => U8,
            _ => return None,
        })
    }

    /// numpy `descr` (little-endian) → dtype; `None` for anything else.
    pub fn from_numpy_descr(descr: &str) -> Option<DType> {
        use DType::*;
        Some(match descr {
            "<f4" => F32,
            "<f8" => F64,
            "<f2" => F16,
            "<i8" => I64,
            "<i4" => I32,
            "<i2" => I16,
            "|i1" | "<i1" => I8,
            "|u1" | "<u1" => U8,
            "|b1" | "<b1" => Bool,
            "<c8" => C64,
            "<c16" => C128,
            "<u2" => U16,
            "<u4" => U32,
            "<u8" => U64,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_round_trip() {
        for d in ALL {
            assert_eq!(DType::from_torch_name(d.torch_name()), Some(d));
        }
        assert_eq!(DType::from_storage_name("BFloat16Storage"), Some(DType::BF16));
        assert_eq!(DType::BF16.itemsize(), 2);
        assert_eq!(DType::from_numpy_descr("<f4"), Some(DType::F32));
        assert_eq!(DType::from_numpy_descr(">f4"), None);
    }
}
