//! Region administration requests: status and membership changes, answered by the
//! node's Raft handle.

use tern_proto::{ErrorCode, Frame};
use tern_region::{AdminError, NodeAddr};

use crate::server::Ctx;
use crate::session::error_frame;

pub(crate) async fn handle(frame: Frame, ctx: &Ctx) -> Frame {
    let req_id = match &frame {
        Frame::RegionStatus { req_id }
        | Frame::RegionAddNode { req_id, .. }
        | Frame::RegionRemoveNode { req_id, .. } => *req_id,
        _ => 0,
    };
    let Some(region) = &ctx.region else {
        return error_frame(
            req_id,
            ErrorCode::BadRequest,
            "this node runs on its own, not in a region (cluster.node_id = 0)",
        );
    };
    let raft = &region.raft;
    let done = match frame {
        Frame::RegionStatus { req_id } => {
            let status = tern_region::status(raft).await;
            return match serde_json::to_string(&status) {
                Ok(json) => Frame::RegionStatusResp { req_id, json },
                Err(e) => error_frame(req_id, ErrorCode::Internal, e.to_string()),
            };
        }
        Frame::RegionAddNode {
            id,
            region_addr,
            client_addr,
            ..
        } => {
            let addr = NodeAddr::with_client(region_addr, client_addr);
            tern_region::add_node(raft, id, addr).await
        }
        Frame::RegionRemoveNode { id, .. } => tern_region::remove_node(raft, id).await,
        other => {
            return error_frame(
                req_id,
                ErrorCode::BadRequest,
                format!("frame kind {:#04x} is not a region request", other.kind()),
            )
        }
    };
    match done {
        Ok(()) => Frame::RegionOk { req_id },
        Err(AdminError::NotLeader {
            leader_client_addr, ..
        }) => error_frame(
            req_id,
            ErrorCode::NotLeader,
            leader_client_addr.unwrap_or_default(),
        ),
        Err(e @ AdminError::Refused(_)) => {
            error_frame(req_id, ErrorCode::BadRequest, e.to_string())
        }
        Err(e) => error_frame(req_id, ErrorCode::Internal, e.to_string()),
    }
}
