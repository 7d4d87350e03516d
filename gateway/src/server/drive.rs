//! One client connection from its first byte to its end: the first request
//! head due by a deadline set at accept, and a graceful finish (the request
//! under way completes) when the listener stops or the connection is asked
//! to make room near the cap.

use std::future::Future;
use std::task::Poll;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tokio::time::Instant;

use super::connections::Ticket;

/// Runs one connection to its end: closed if no request began by
/// `header_due`, and finished gracefully (the request under way completes)
/// when the listener stops or the connection is asked to make room.
pub async fn drive<C>(
    conn: C,
    ticket: &Ticket,
    header_due: Instant,
    mut stop: watch::Receiver<()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    C: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + GracefulShutdown,
{
    let state = ticket.state();
    tokio::pin!(conn);
    let first_head = tokio::time::sleep_until(header_due);
    tokio::pin!(first_head);
    let mut waiting_for_first = true;
    let mut finishing = false;
    loop {
        tokio::select! {
            biased;
            done = conn.as_mut() => return done,
            // Once a request has begun the deadline no longer matters: the
            // timer is then left alone instead of polled on every wake of a
            // busy connection (about 400 instructions a request, bench/HISTORY.md).
            () = std::future::poll_fn(|cx| if state.started() { Poll::Pending } else { first_head.as_mut().poll(cx) }),
                if waiting_for_first => {
                waiting_for_first = false;
                if !state.started() {
                    tracing::debug!("no request within server.header_timeout of accept; closing");
                    return Ok(());
                }
            }
            _ = stop.changed(), if !finishing => {
                finishing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = state.asked_to_close(), if !finishing => {
                finishing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A connection that can be asked to finish its request under way and close.
pub trait GracefulShutdown {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> GracefulShutdown for auto::Connection<'_, I, S, TokioExecutor>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        auto::Connection::graceful_shutdown(self);
    }
}
