//! Log capture: one global subscriber per test binary, at debug level for the product, so tests
//! can assert what was logged and that no token ever was.

use std::sync::{Arc, Mutex, OnceLock};

/// Everything logged so far.
#[derive(Clone, Default)]
pub struct LogBuf(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        // For debugging a failure: E2E_LOG_FILE=/tmp/e2e.log also writes the logs there.
        if let Some(path) = std::env::var_os("E2E_LOG_FILE") {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = f.write_all(buf);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capture (once) and returns it.
pub fn logs() -> &'static LogBuf {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuf::default();
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug,wiremock=off,hyper=info,hyper_util=info,h2=info,tower=info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buf
    })
}

/// The captured logs as text.
pub fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}
