//! `Array`: an owned handle on an MLX array (a refcounted, lazily evaluated tensor).
use crate::error::{mlx_err, Error, Result};
use crate::ffi::bridge;
use cxx::UniquePtr;
use std::fmt;

/// MLX dtypes the binding supports; the discriminant is the code shared with the C++ shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dtype {
    Bool = 0,
    Uint8 = 1,
    Uint16 = 2,
    Uint32 = 3,
    Uint64 = 4,
    Int8 = 5,
    Int16 = 6,
    Int32 = 7,
    Int64 = 8,
    Float16 = 9,
    Float32 = 10,
    Bfloat16 = 11,
    Float64 = 12,
}

impl Dtype {
    const ALL: [Dtype; 13] = [
        Dtype::Bool,
        Dtype::Uint8,
        Dtype::Uint16,
        Dtype::Uint32,
        Dtype::Uint64,
        Dtype::Int8,
        Dtype::Int16,
        Dtype::Int32,
        Dtype::Int64,
        Dtype::Float16,
        Dtype::Float32,
        Dtype::Bfloat16,
        Dtype::Float64,
    ];

    pub(crate) fn from_code(code: u8) -> Result<Dtype> {
        Dtype::ALL
            .get(code as usize)
            .copied()
            .ok_or(Error::InvalidArgument {
                op: "dtype",
                message: format!("unknown dtype code {code}"),
            })
    }

    pub fn size_bytes(self) -> usize {
        match self {
            Dtype::Bool | Dtype::Uint8 | Dtype::Int8 => 1,
            Dtype::Uint16 | Dtype::Int16 | Dtype::Float16 | Dtype::Bfloat16 => 2,
            Dtype::Uint32 | Dtype::Int32 | Dtype::Float32 => 4,
            Dtype::Uint64 | Dtype::Int64 | Dtype::Float64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            Dtype::Float16 | Dtype::Float32 | Dtype::Bfloat16 | Dtype::Float64
        )
    }

    /// The name safetensors and numpy use ("F32", "BF16", ...).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::Uint8 => "U8",
            Dtype::Uint16 => "U16",
            Dtype::Uint32 => "U32",
            Dtype::Uint64 => "U64",
            Dtype::Int8 => "I8",
            Dtype::Int16 => "I16",
            Dtype::Int32 => "I32",
            Dtype::Int64 => "I64",
            Dtype::Float16 => "F16",
            Dtype::Float32 => "F32",
            Dtype::Bfloat16 => "BF16",
            Dtype::Float64 => "F64",
        }
    }

    /// Parses the names users and configs give ("float16", "bf16", "float32"...).
    pub fn parse(name: &str) -> Option<Dtype> {
        Some(match name.to_ascii_lowercase().as_str() {
            "float16" | "f16" | "half" => Dtype::Float16,
            "bfloat16" | "bf16" => Dtype::Bfloat16,
            "float32" | "f32" | "float" => Dtype::Float32,
            "float64" | "f64" => Dtype::Float64,
            "int32" | "i32" => Dtype::Int32,
            "int64" | "i64" => Dtype::Int64,
            "uint32" | "u32" => Dtype::Uint32,
            "uint8" | "u8" => Dtype::Uint8,
            "int8" | "i8" => Dtype::Int8,
            "bool" => Dtype::Bool,
            _ => return None,
        })
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", format!("{self:?}").to_ascii_lowercase())
    }
}

/// Plain Rust element types that map one-to-one onto an MLX dtype.
pub trait Element: Copy + 'static {
    const DTYPE: Dtype;
    fn to_f64(self) -> f64;
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: Dtype = $d;
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}
element!(f32, Dtype::Float32);
element!(f64, Dtype::Float64);
element!(i32, Dtype::Int32);
element!(i64, Dtype::Int64);
element!(u32, Dtype::Uint32);
element!(u64, Dtype::Uint64);
element!(u8, Dtype::Uint8);
element!(i8, Dtype::Int8);
element!(u16, Dtype::Uint16);
element!(i16, Dtype::Int16);

/// An MLX array. Cloning is cheap (it shares the buffer, like MLX's own copies).
pub struct Array(pub(crate) UniquePtr<bridge::Array>);

// MLX arrays are reference-counted handles to immutable buffers; moving one to another thread
// is fine. Concurrent use of the same graph from two threads is not, hence no `Sync`.
unsafe impl Send for Array {}

impl Clone for Array {
    fn clone(&self) -> Self {
        Array(bridge::clone_array(&self.0))
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bridge::describe(&self.0))
    }
}

pub(crate) fn wrap(
    op: &'static str,
    r: std::result::Result<UniquePtr<bridge::Array>, cxx::Exception>,
) -> Result<Array> {
    r.map(Array).map_err(mlx_err(op))
}

fn check_shape(op: &'static str, len: usize, shape: &[i32]) -> Result<()> {
    let mut n: usize = 1;
    for &d in shape {
        if d < 0 {
            return Err(Error::InvalidArgument {
                op,
                message: format!("negative dimension in {shape:?}"),
            });
        }
        n = n.saturating_mul(d as usize);
    }
    if n != len {
        return Err(Error::InvalidArgument {
            op,
            message: format!("{len} elements do not fill shape {shape:?} ({n} elements)"),
        });
    }
    Ok(())
}

impl Array {
    /// Copies a host slice into a new array of the given shape.
    pub fn from_slice<T: Element>(data: &[T], shape: &[i32]) -> Result<Array> {
        check_shape("from_slice", data.len(), shape)?;
        // Safety: Element types are plain-old-data; viewing them as bytes is sound.
        let bytes = unsafe {
            std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data))
        };
        Self::from_bytes(bytes, shape, T::DTYPE)
    }

    /// Builds an array from raw little-endian bytes (e.g. bfloat16 straight from a file).
    pub fn from_bytes(bytes: &[u8], shape: &[i32], dtype: Dtype) -> Result<Array> {
        wrap("from_bytes", bridge::from_bytes(bytes, shape, dtype as u8))
    }

    pub fn scalar<T: Element>(v: T) -> Result<Array> {
        Self::from_slice(&[v], &[])
    }

    pub fn full(shape: &[i32], value: f64, dtype: Dtype) -> Result<Array> {
        wrap("full", bridge::full_f64(shape, value, dtype as u8))
    }

    pub fn zeros(shape: &[i32], dtype: Dtype) -> Result<Array> {
        Self::full(shape, 0.0, dtype)
    }

    pub fn ones(shape: &[i32], dtype: Dtype) -> Result<Array> {
        Self::full(shape, 1.0, dtype)
    }

    pub fn arange(start: f64, stop: f64, step: f64, dtype: Dtype) -> Result<Array> {
        wrap("arange", bridge::arange_f64(start, stop, step, dtype as u8))
    }

    pub fn shape(&self) -> Vec<i32> {
        bridge::shape(&self.0)
    }

    /// Size of axis `axis` (negative counts from the end).
    pub fn dim(&self, axis: i32) -> i32 {
        let s = self.shape();
        let i = if axis < 0 {
            s.len() as i32 + axis
        } else {
            axis
        };
        s.get(i as usize).copied().unwrap_or(0)
    }

    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    pub fn size(&self) -> usize {
        self.shape().iter().map(|&d| d as usize).product()
    }

    /// Whether the data is on the host already: made from a slice, or evaluated (reading it
    /// then needs no eval, which would wait behind whatever is queued on the stream).
    pub fn is_available(&self) -> bool {
        bridge::is_available(&self.0)
    }

    pub fn dtype(&self) -> Dtype {
        bridge::dtype(&self.0)
            .ok()
            .and_then(|c| Dtype::from_code(c).ok())
            .unwrap_or(Dtype::Float32)
    }

    pub fn nbytes(&self) -> usize {
        bridge::nbytes(&self.0)
    }

    /// Computes the array now.
    pub fn eval(&self) -> Result<()> {
        bridge::eval_one(&self.0).map_err(mlx_err("eval"))
    }

    /// Evaluates and copies the data out as row-major bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.nbytes()];
        bridge::copy_bytes(&self.0, &mut out).map_err(mlx_err("to_bytes"))?;
        Ok(out)
    }

    /// Evaluates and copies the data out; the array's dtype must be `T`'s.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let actual = self.dtype();
        if actual != T::DTYPE {
            return Err(Error::DtypeMismatch {
                op: "to_vec",
                actual,
                expected: T::DTYPE,
            });
        }
        let bytes = self.to_bytes()?;
        let size = std::mem::size_of::<T>();
        if bytes.len() % size != 0 {
            return Err(Error::InvalidArgument {
                op: "to_vec",
                message: format!("{} bytes are not whole {actual} values", bytes.len()),
            });
        }
        let n = bytes.len() / size;
        let mut out = Vec::<T>::with_capacity(n);
        // Safety: exactly n * size bytes are copied, into storage allocated for n values of T
        // (a plain-old-data Element type); copying into fresh storage sidesteps alignment.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr() as *mut u8, n * size);
            out.set_len(n);
        }
        Ok(out)
    }

    /// Converts to float32 on device and copies out: the convenient read-back for tests.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        self.astype(Dtype::Float32)?.to_vec::<f32>()
    }

    /// The single value of a one-element array.
    pub fn item<T: Element>(&self) -> Result<T> {
        let v = self.to_vec::<T>()?;
        match v.as_slice() {
            [x] => Ok(*x),
            _ => Err(Error::InvalidArgument {
                op: "item",
                message: format!("array has {} elements, not 1", v.len()),
            }),
        }
    }
}
