//! Control plane runtime: one thread of its own for the work that keeps state current — health
//! checks, outlier sweeps, discovery — so that none of it ever runs on (or delays) a worker that
//! serves traffic. Started on first use, it lives as long as the process.

use std::sync::OnceLock;
use tokio::runtime::Handle;

/// The control runtime's handle; the thread is started by the first call.
pub(crate) fn control() -> Handle {
    static CONTROL: OnceLock<Handle> = OnceLock::new();
    CONTROL
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("gatehouse-control".into())
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("the control runtime starts");
                    let _ = tx.send(rt.handle().clone());
                    rt.block_on(std::future::pending::<()>());
                })
                .expect("the control thread starts");
            rx.recv().expect("the control runtime reports its handle")
        })
        .clone()
}
