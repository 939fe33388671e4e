//! Stream and plugin administration requests, and other requests answered at once.

use tern_proto::{ErrorBody, ErrorCode, Frame};

use crate::server::Ctx;
use crate::session::{error_frame, hello_ok, store_error};

pub(crate) async fn handle(frame: Frame, ctx: &Ctx) -> Frame {
    match frame {
        Frame::Hello { version, .. } => hello_ok(version, ctx),
        Frame::StreamAdd { req_id, config } => match ctx.store.create_stream(config).await {
            Ok(info) => {
                tracing::info!(stream = %info.config.name, subjects = ?info.config.subjects, "stream ready");
                Frame::StreamInfo { req_id, info }
            }
            Err(e) => Frame::Error {
                req_id,
                error: store_error(&e),
            },
        },
        Frame::StreamGet { req_id, name } => match ctx.store.stream_info(&name) {
            Ok(info) => Frame::StreamInfo { req_id, info },
            Err(e) => Frame::Error {
                req_id,
                error: store_error(&e),
            },
        },
        Frame::StreamList { req_id } => Frame::StreamListResp {
            req_id,
            streams: ctx.store.list_streams(),
        },
        Frame::StreamRemove { req_id, name } => {
            ctx.groups.forget_stream(&name).await;
            match ctx.store.delete_stream(&name).await {
                Ok(()) => {
                    tracing::info!(stream = %name, "stream removed");
                    Frame::Done { req_id }
                }
                Err(e) => Frame::Error {
                    req_id,
                    error: store_error(&e),
                },
            }
        }
        f @ (Frame::PluginDeploy(_)
        | Frame::PluginRollback { .. }
        | Frame::PluginRemove { .. }
        | Frame::PluginAttach { .. }
        | Frame::PluginDetach { .. }) => match ctx.refuse_unless_leader() {
            Some(error) => Frame::Error {
                req_id: plugin_req_id(&f),
                error,
            },
            None => plugin_admin(f, ctx).await,
        },
        Frame::PluginList { req_id } => Frame::PluginListResp {
            req_id,
            json: ctx.plugins.list_json(),
        },
        Frame::MeshStatus { req_id } => Frame::MeshStatusResp {
            req_id,
            json: ctx.mesh.status_json(&ctx.config.region),
        },
        f @ (Frame::RegionStatus { .. }
        | Frame::RegionAddNode { .. }
        | Frame::RegionRemoveNode { .. }) => crate::region::handle(f, ctx).await,
        other => error_frame(
            0,
            ErrorCode::BadRequest,
            format!("frame kind {:#04x} is not a request", other.kind()),
        ),
    }
}

fn plugin_req_id(f: &Frame) -> u64 {
    match f {
        Frame::PluginDeploy(d) => d.req_id,
        Frame::PluginRollback { req_id, .. }
        | Frame::PluginRemove { req_id, .. }
        | Frame::PluginAttach { req_id, .. }
        | Frame::PluginDetach { req_id, .. } => *req_id,
        _ => 0,
    }
}

/// Plugin changes: each is persisted (through the region log, in a region) before it is
/// answered.
async fn plugin_admin(frame: Frame, ctx: &Ctx) -> Frame {
    match frame {
        Frame::PluginDeploy(d) => {
            let req_id = d.req_id;
            match ctx.plugins.deploy(d).await {
                Ok((name, version)) => Frame::PluginOk {
                    req_id,
                    name,
                    version,
                },
                Err(error) => Frame::Error { req_id, error },
            }
        }
        Frame::PluginRollback { req_id, name, by } => {
            match ctx.plugins.rollback(&name, &by).await {
                Ok(version) => Frame::PluginOk {
                    req_id,
                    name,
                    version,
                },
                Err(error) => Frame::Error { req_id, error },
            }
        }
        Frame::PluginRemove { req_id, name, by } => {
            done(req_id, ctx.plugins.remove(&name, &by).await)
        }
        Frame::PluginAttach {
            req_id,
            stream,
            name,
            fallback,
        } => done(
            req_id,
            ctx.plugins
                .attach(&stream, &name, fallback.as_deref())
                .await,
        ),
        Frame::PluginDetach {
            req_id,
            stream,
            name,
        } => done(req_id, ctx.plugins.detach(&stream, &name).await),
        other => error_frame(
            plugin_req_id(&other),
            ErrorCode::BadRequest,
            format!("frame kind {:#04x} is not a plugin change", other.kind()),
        ),
    }
}

fn done(req_id: u64, r: Result<(), ErrorBody>) -> Frame {
    match r {
        Ok(()) => Frame::Done { req_id },
        Err(error) => Frame::Error { req_id, error },
    }
}
