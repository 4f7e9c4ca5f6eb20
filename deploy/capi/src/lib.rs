//! C ABI over prism-deploy's [`StreamDetector`]; the contract is `include/prism.h`
//! (hand-written, checked by compiling and running `examples/stream.c` in the tests).
//!
//! Every entry point checks its pointers, catches panics (none are expected) and reports errors
//! through a thread-local message ([`prism_last_error`]), never by unwinding into C.
// FFI needs raw pointers; each unsafe block states what the caller guarantees.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use prism_deploy::{Backend, DeployError, Engine, EngineOptions, StreamDetector, WindowDetections};

/// One detection, in sensor pixels (`PrismDetection` in the header).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PrismDetection {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub class_id: u32,
}

/// `PrismWindowCallback`: (user, end_us, detections, count).
pub type PrismWindowCallback =
    Option<unsafe extern "C" fn(*mut c_void, i64, *const PrismDetection, usize)>;

/// An event stream's detector (opaque to C).
#[derive(Debug)]
pub struct PrismDetector {
    detector: StreamDetector,
    classes: Vec<CString>,
    buffer: Vec<PrismDetection>,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_error(message: String) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(c));
}

/// Runs `f`, turning errors and panics into the thread's last error and `fallback`.
fn guard<T>(fallback: T, f: impl FnOnce() -> Result<T, String>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(message)) => {
            set_error(message);
            fallback
        }
        Err(_) => {
            set_error("internal error (panic) in prism-deploy".into());
            fallback
        }
    }
}

/// # Safety
/// `s` is NULL or a NUL-terminated string.
unsafe fn str_arg<'a>(s: *const c_char, what: &str) -> Result<&'a str, String> {
    if s.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: non-null and NUL-terminated per the contract.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| format!("{what} is not UTF-8"))
}

/// # Safety
/// `ptr` is NULL only when `count` is 0, else it points to `count` readable values.
unsafe fn slice_arg<'a, T>(ptr: *const T, count: usize, what: &str) -> Result<&'a [T], String> {
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(format!("{what} is NULL with {count} events"));
    }
    // SAFETY: non-null, `count` readable values per the contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// Calls `callback` for one window, converting into the detector's reused buffer; always goes on.
fn deliver(
    buffer: &mut Vec<PrismDetection>,
    callback: PrismWindowCallback,
    user: *mut c_void,
    w: &WindowDetections<'_>,
) -> Result<bool, DeployError> {
    buffer.clear();
    buffer.extend(w.detections.iter().map(|d| PrismDetection {
        x1: d.bbox.x1,
        y1: d.bbox.y1,
        x2: d.bbox.x2,
        y2: d.bbox.y2,
        score: d.score,
        class_id: u32::try_from(d.class_id).unwrap_or(u32::MAX),
    }));
    if let Some(cb) = callback {
        // SAFETY: the caller supplied a valid callback; the pointer is valid for the call.
        unsafe { cb(user, w.end_us, buffer.as_ptr(), buffer.len()) };
    }
    Ok(true)
}

/// Loads a model; NULL on error.
///
/// # Safety
/// `model_path` and `backend` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn prism_detector_new(
    model_path: *const c_char,
    backend: *const c_char,
) -> *mut PrismDetector {
    guard(std::ptr::null_mut(), || {
        // SAFETY: forwarded contract.
        let path = unsafe { str_arg(model_path, "model_path") }?;
        // SAFETY: forwarded contract.
        let backend: Backend = unsafe { str_arg(backend, "backend") }?
            .parse()
            .map_err(|e: DeployError| e.to_string())?;
        let engine = Engine::load(path, &EngineOptions::new(backend)).map_err(|e| e.to_string())?;
        let classes = engine
            .spec()
            .classes
            .iter()
            .map(|c| CString::new(c.replace('\0', " ")).unwrap_or_default())
            .collect();
        let detector = StreamDetector::new(Arc::new(engine)).map_err(|e| e.to_string())?;
        Ok(Box::into_raw(Box::new(PrismDetector {
            detector,
            classes,
            buffer: Vec::new(),
        })))
    })
}

/// # Safety
/// `detector` comes from `prism_detector_new`; the arrays hold `count` values each; `callback`
/// is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn prism_detector_push(
    detector: *mut PrismDetector,
    t: *const i64,
    x: *const u16,
    y: *const u16,
    p: *const u8,
    count: usize,
    callback: PrismWindowCallback,
    user: *mut c_void,
) -> c_int {
    guard(-1, || {
        // SAFETY: a live detector per the contract, used by one thread at a time.
        let d = unsafe { detector.as_mut() }.ok_or("detector is NULL")?;
        // SAFETY: forwarded contract.
        let (t, x, y, p) = unsafe {
            (
                slice_arg(t, count, "t")?,
                slice_arg(x, count, "x")?,
                slice_arg(y, count, "y")?,
                slice_arg(p, count, "p")?,
            )
        };
        let buffer = &mut d.buffer;
        d.detector
            .push_slices(t, x, y, p, &mut |w: &WindowDetections<'_>| {
                deliver(buffer, callback, user, w)
            })
            .map_err(|e| e.to_string())?;
        Ok(0)
    })
}

/// # Safety
/// As [`prism_detector_push`].
#[no_mangle]
pub unsafe extern "C" fn prism_detector_finish(
    detector: *mut PrismDetector,
    callback: PrismWindowCallback,
    user: *mut c_void,
) -> c_int {
    guard(-1, || {
        // SAFETY: a live detector per the contract.
        let d = unsafe { detector.as_mut() }.ok_or("detector is NULL")?;
        let buffer = &mut d.buffer;
        d.detector
            .finish(&mut |w: &WindowDetections<'_>| deliver(buffer, callback, user, w))
            .map_err(|e| e.to_string())?;
        Ok(0)
    })
}

/// # Safety
/// `detector` comes from `prism_detector_new`.
#[no_mangle]
pub unsafe extern "C" fn prism_detector_reset(detector: *mut PrismDetector) -> c_int {
    guard(-1, || {
        // SAFETY: a live detector per the contract.
        let d = unsafe { detector.as_mut() }.ok_or("detector is NULL")?;
        d.detector.reset().map_err(|e| e.to_string())?;
        Ok(0)
    })
}

/// # Safety
/// `detector` is NULL or comes from `prism_detector_new`.
#[no_mangle]
pub unsafe extern "C" fn prism_detector_num_classes(detector: *const PrismDetector) -> usize {
    // SAFETY: NULL or live per the contract.
    unsafe { detector.as_ref() }.map_or(0, |d| d.classes.len())
}

/// # Safety
/// `detector` is NULL or comes from `prism_detector_new`.
#[no_mangle]
pub unsafe extern "C" fn prism_detector_class_name(
    detector: *const PrismDetector,
    index: usize,
) -> *const c_char {
    // SAFETY: NULL or live per the contract.
    unsafe { detector.as_ref() }
        .and_then(|d| d.classes.get(index))
        .map_or(std::ptr::null(), |c| c.as_ptr())
}

/// # Safety
/// `detector` is NULL or comes from `prism_detector_new` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn prism_detector_free(detector: *mut PrismDetector) {
    if !detector.is_null() {
        // SAFETY: created by Box::into_raw in prism_detector_new, freed once per the contract.
        drop(unsafe { Box::from_raw(detector) });
    }
}

/// The calling thread's last error, or NULL.
#[no_mangle]
pub extern "C" fn prism_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
}
