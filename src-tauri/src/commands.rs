//! The Tauri commands: one thin, typed adapter per operation of docs/APP_API.md, named after
//! the operation in snake_case (ui/src/services/tauri.ts), returning the same JSON as the HTTP
//! app API. Replies stream over a [`Channel`]; the reply stops when the window stops listening.
use crate::error::{Arg, CommandError, CommandResult};
use crate::Desktop;
use cortex_service::chat::{ChatPatch, ConversationTree, NewChat, SendMessage};
use cortex_service::convert::{Conversion, ConvertRequest, Estimate};
use cortex_service::downloads::{Download, DownloadRequest};
use cortex_service::hub::{ModelPage, PageParams, SearchParams};
use cortex_service::library::{Deleted, ImportRequest, Library, ModelUpdate, ModelView};
use cortex_service::settings::{Settings, SettingsUpdate};
use cortex_service::{ChatEvent, ReplyStream, SystemInfo};
use serde::Deserialize;
use serde_json::{json, Value};
use tauri::ipc::Channel;
use tauri::State;

type D<'a> = State<'a, Desktop>;

#[tauri::command]
pub async fn get_system(d: D<'_>) -> CommandResult<SystemInfo> {
    Ok(d.app.system().await?)
}

#[tauri::command]
pub async fn get_settings(d: D<'_>) -> CommandResult<Settings> {
    Ok(d.app.settings().await?)
}

#[tauri::command]
pub async fn update_settings(d: D<'_>, update: Arg<SettingsUpdate>) -> CommandResult<Settings> {
    Ok(d.app.update_settings(update.get("update")?).await?)
}

#[tauri::command]
pub async fn list_models(d: D<'_>) -> CommandResult<Library> {
    Ok(d.app.list_models().await?)
}

#[tauri::command]
pub async fn get_model(d: D<'_>, id: String) -> CommandResult<ModelView> {
    Ok(d.app.get_model(&id).await?)
}

#[tauri::command]
pub async fn update_model(
    d: D<'_>,
    id: String,
    update: Arg<ModelUpdate>,
) -> CommandResult<ModelView> {
    Ok(d.app.update_model(&id, update.get("update")?).await?)
}

#[tauri::command]
pub async fn delete_model(d: D<'_>, id: String) -> CommandResult<Deleted> {
    Ok(d.app.delete_model(&id).await?)
}

#[tauri::command]
pub async fn load_model(d: D<'_>, id: String) -> CommandResult<ModelView> {
    Ok(d.app.load_model(&id).await?)
}

#[tauri::command]
pub async fn unload_model(d: D<'_>, id: String) -> CommandResult<ModelView> {
    Ok(d.app.unload_model(&id).await?)
}

#[tauri::command]
pub async fn import_model(d: D<'_>, request: Arg<ImportRequest>) -> CommandResult<ModelView> {
    Ok(d.app.import_model(request.get("request")?).await?)
}

#[tauri::command]
pub async fn search_hub(d: D<'_>, query: Arg<SearchParams>) -> CommandResult<Value> {
    let results = cortex_service::hub::search(d.app.hub_config(), query.get("query")?).await?;
    Ok(json!({ "results": results }))
}

#[tauri::command]
pub async fn get_hub_model(d: D<'_>, query: Arg<PageParams>) -> CommandResult<ModelPage> {
    Ok(cortex_service::hub::model_page(d.app.hub_config(), query.get("query")?).await?)
}

#[tauri::command]
pub async fn start_download(d: D<'_>, request: Arg<DownloadRequest>) -> CommandResult<Download> {
    Ok(d.app.start_download(request.get("request")?).await?)
}

#[tauri::command]
pub async fn list_downloads(d: D<'_>) -> CommandResult<Value> {
    Ok(json!({ "downloads": d.app.list_downloads().await? }))
}

#[tauri::command]
pub async fn pause_download(d: D<'_>, id: String) -> CommandResult<Download> {
    Ok(d.app.pause_download(&id).await?)
}

#[tauri::command]
pub async fn resume_download(d: D<'_>, id: String) -> CommandResult<Download> {
    Ok(d.app.resume_download(&id).await?)
}

/// Same as resume: a failed download continues from the bytes it has.
#[tauri::command]
pub async fn retry_download(d: D<'_>, id: String) -> CommandResult<Download> {
    Ok(d.app.resume_download(&id).await?)
}

#[tauri::command]
pub async fn cancel_download(d: D<'_>, id: String) -> CommandResult<Download> {
    Ok(d.app.cancel_download(&id).await?)
}

#[tauri::command]
pub async fn forget_download(d: D<'_>, id: String) -> CommandResult<Value> {
    d.app.forget_download(&id).await?;
    Ok(json!({}))
}

#[tauri::command]
pub async fn estimate_conversion(
    d: D<'_>,
    options: Arg<ConvertRequest>,
) -> CommandResult<Estimate> {
    Ok(d.app.estimate_conversion(options.get("options")?).await?)
}

#[tauri::command]
pub async fn start_conversion(d: D<'_>, request: Arg<ConvertRequest>) -> CommandResult<Conversion> {
    Ok(d.app.start_conversion(request.get("request")?).await?)
}

#[tauri::command]
pub async fn list_conversions(d: D<'_>) -> CommandResult<Value> {
    Ok(json!({ "conversions": d.app.list_conversions().await? }))
}

#[tauri::command]
pub async fn cancel_conversion(d: D<'_>, id: String) -> CommandResult<Conversion> {
    Ok(d.app.cancel_conversion(&id).await?)
}

#[tauri::command]
pub async fn list_conversations(d: D<'_>, q: Option<String>) -> CommandResult<Value> {
    let list = d.app.list_conversations(q.as_deref()).await?;
    Ok(json!({ "conversations": list }))
}

#[tauri::command]
pub async fn create_conversation(
    d: D<'_>,
    request: Arg<NewChat>,
) -> CommandResult<cortex_catalog::Conversation> {
    Ok(d.app.create_conversation(request.get("request")?).await?)
}

#[tauri::command]
pub async fn get_conversation(d: D<'_>, id: String) -> CommandResult<ConversationTree> {
    Ok(d.app.get_conversation(&id).await?)
}

#[tauri::command]
pub async fn update_conversation(
    d: D<'_>,
    id: String,
    update: Arg<ChatPatch>,
) -> CommandResult<cortex_catalog::Conversation> {
    Ok(d.app
        .update_conversation(&id, update.get("update")?)
        .await?)
}

#[tauri::command]
pub async fn delete_conversation(d: D<'_>, id: String) -> CommandResult<Value> {
    d.app.delete_conversation(&id).await?;
    Ok(json!({}))
}

/// Sends a message; the reply's events go to `on_event` and the command returns when the
/// reply ends (done, error or stopped).
#[tauri::command]
pub async fn send_message(
    d: D<'_>,
    conversation_id: String,
    request: Arg<SendMessage>,
    on_event: Channel<ChatEvent>,
) -> CommandResult<()> {
    let stream = d
        .app
        .send_message(&conversation_id, request.get("request")?)
        .await?;
    forward(stream, &on_event).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regenerate {
    pub message_id: String,
}

#[tauri::command]
pub async fn regenerate(
    d: D<'_>,
    conversation_id: String,
    request: Arg<Regenerate>,
    on_event: Channel<ChatEvent>,
) -> CommandResult<()> {
    let request = request.get("request")?;
    let stream = d
        .app
        .regenerate(&conversation_id, &request.message_id)
        .await?;
    forward(stream, &on_event).await
}

#[tauri::command]
pub async fn stop_reply(d: D<'_>, conversation_id: String) -> CommandResult<Value> {
    Ok(json!({ "stopped": d.app.stop_reply(&conversation_id) }))
}

/// Passes a reply's events to the window until the last one. A window that is gone (the
/// channel refuses) drops the stream, which stops the reply; what was written is kept.
pub async fn forward(mut stream: ReplyStream, on_event: &Channel<ChatEvent>) -> CommandResult<()> {
    while let Some(event) = stream.recv().await {
        let last = event.is_last();
        if on_event.send(event).is_err() {
            return Err(CommandError::new(
                "cancelled",
                "the window stopped listening",
            ));
        }
        if last {
            break;
        }
    }
    Ok(())
}

/// Opens an http(s) link in the system browser; the window itself never leaves the app.
#[tauri::command]
pub fn open_link<R: tauri::Runtime>(app: tauri::AppHandle<R>, url: String) -> CommandResult<()> {
    let parsed = crate::links::external(&url)
        .ok_or_else(|| CommandError::new("invalid_input", "only http and https links open"))?;
    crate::links::open(&app, parsed);
    Ok(())
}
