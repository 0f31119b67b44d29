//! Categories and tags: `categories`, `createCategory`, `editCategory`,
//! `removeCategories`, `setCategory`, `tags`, `createTags`, `deleteTags`,
//! `addTags`, `removeTags`, with qBittorrent's names, rules and status codes
//! (400 for a bad name, 409 for a category that exists or does not).

use serde_json::{json, Map, Value};

use super::actions::chosen;
use super::http::{ApiError, Params, Reply};
use super::labels::{valid_category, valid_tag, Category, Labels};
use super::Api;

pub fn categories(api: &Api) -> Reply {
    let mut out = Map::new();
    for (name, c) in api.labels.get().categories {
        out.insert(name.clone(), json!({"name": name, "savePath": c.save_path}));
    }
    Reply::Json(Value::Object(out))
}

pub fn set_category(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let category = p.need("category")?.trim().to_string();
    let chosen = chosen(api, p)?;
    api.labels.update(|l: &mut Labels| {
        if !category.is_empty() && !l.categories.contains_key(&category) {
            return Err(ApiError::Conflict("Incorrect category name".into()));
        }
        for ih in &chosen {
            l.torrents.entry(*ih).or_default().category = category.clone();
        }
        Ok(())
    })?;
    Ok(Reply::ok())
}

pub fn edit_category(api: &Api, p: &Params, create: bool) -> Result<Reply, ApiError> {
    let name = p.need("category")?.trim().to_string();
    let save_path = p.get("savePath").unwrap_or("").trim().to_string();
    if name.is_empty() {
        return Err(ApiError::BadParams("Category cannot be empty".into()));
    }
    if !valid_category(&name) {
        return Err(ApiError::BadParams("Incorrect category name".into()));
    }
    api.labels.update(|l: &mut Labels| {
        match (create, l.categories.contains_key(&name)) {
            (true, true) => return Err(ApiError::Conflict("Unable to create category".into())),
            (false, false) => return Err(ApiError::Conflict("Unable to edit category".into())),
            _ => {}
        }
        // qBittorrent refuses an edit that changes nothing.
        if !create
            && l.categories
                .get(&name)
                .is_some_and(|c| c.save_path == save_path)
        {
            return Err(ApiError::Conflict("Unable to edit category".into()));
        }
        l.categories.insert(
            name.clone(),
            Category {
                save_path: save_path.clone(),
            },
        );
        Ok(())
    })?;
    Ok(Reply::ok())
}

pub fn remove_categories(api: &Api, p: &Params) -> Result<Reply, ApiError> {
    let names: Vec<String> = p
        .need("categories")?
        .lines()
        .map(|c| c.trim().to_string())
        .collect();
    api.labels.update(|l: &mut Labels| {
        for n in &names {
            l.categories.remove(n);
        }
        for t in l.torrents.values_mut() {
            if names.contains(&t.category) {
                t.category.clear();
            }
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(Reply::ok())
}

pub fn tags(api: &Api, name: &str, p: &Params) -> Result<Reply, ApiError> {
    let raw = match name {
        "torrents/removeTags" => p.get("tags").unwrap_or(""),
        _ => p.need("tags")?,
    };
    let tags: Vec<String> = raw
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| valid_tag(t))
        .collect();
    let chosen = match name {
        "torrents/addTags" | "torrents/removeTags" => chosen(api, p)?,
        _ => Vec::new(),
    };
    api.labels.update(|l: &mut Labels| {
        match name {
            "torrents/createTags" => l.tags.extend(tags.iter().cloned()),
            "torrents/addTags" => {
                l.tags.extend(tags.iter().cloned());
                for ih in &chosen {
                    l.torrents
                        .entry(*ih)
                        .or_default()
                        .tags
                        .extend(tags.iter().cloned());
                }
            }
            "torrents/removeTags" => {
                for ih in &chosen {
                    let t = l.torrents.entry(*ih).or_default();
                    match tags.is_empty() {
                        true => t.tags.clear(),
                        false => t.tags.retain(|x| !tags.contains(x)),
                    }
                }
            }
            _ => {
                for tag in &tags {
                    l.tags.remove(tag);
                }
                for t in l.torrents.values_mut() {
                    t.tags.retain(|x| !tags.contains(x));
                }
            }
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(Reply::ok())
}
