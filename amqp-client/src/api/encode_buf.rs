//! A per-thread buffer that the API encodes frames into. Each frame is split off as its own
//! `Bytes`, sharing one 64 KiB block with its neighbours, so encoding a publish or a method
//! costs an allocation per block rather than per frame (the publish profile had malloc and
//! free at the top).

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

const BLOCK: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(BLOCK));
}

/// Runs `encode` on an empty buffer and returns what it wrote as `Bytes`.
pub(crate) fn encode<E>(encode: impl FnOnce(&mut BytesMut) -> Result<(), E>) -> Result<Bytes, E> {
    BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.capacity() - buf.len() < BLOCK / 16 {
            // Whatever was split off before keeps the old block alive; this starts a new one.
            *buf = BytesMut::with_capacity(BLOCK);
        }
        buf.clear();
        match encode(&mut buf) {
            Ok(()) => Ok(buf.split().freeze()),
            Err(e) => {
                buf.clear();
                Err(e)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_separate_and_intact() {
        let a = encode::<()>(|b| {
            b.extend_from_slice(b"first");
            Ok(())
        })
        .unwrap();
        let b = encode::<()>(|b| {
            b.extend_from_slice(b"second");
            Ok(())
        })
        .unwrap();
        assert_eq!((&a[..], &b[..]), (&b"first"[..], &b"second"[..]));
        let failed = encode(|b| {
            b.extend_from_slice(b"partial");
            Err("no")
        });
        assert_eq!(failed, Err("no"));
        let c = encode::<()>(|b| {
            b.extend_from_slice(b"third");
            Ok(())
        })
        .unwrap();
        assert_eq!(&c[..], b"third", "a failed encoding leaves nothing behind");
    }
}
