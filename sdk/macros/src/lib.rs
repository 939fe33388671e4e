//! Attribute macros of `tern-sdk`: `#[tern_sdk::dedup_key]`, `#[tern_sdk::route]`,
//! `#[tern_sdk::residency]`, `#[tern_sdk::resolve]`. Use them through `tern_sdk`.
//!
//! Each keeps the annotated function as it is (so native tests call it directly) and adds:
//! - a glue function with the hook's WIT signature that calls it;
//! - on `wasm32` only, the component bindings of the hook's world (generated here, in the
//!   plugin crate, so the component exports exactly this one hook) and the export of the glue.
//!
//! The function's parameters are recognized by type, in any order:
//! `&[Message]` (or `&[Conflict]` for `resolve`) the batch, required; `&Payloads` the
//! payloads (taking it makes the node pass them); `&Hop` (residency only); `&str` the stream.
//! `#[tern_sdk::route(reads_payload = path::to::fn)]` decides at deploy time instead, for a
//! plugin whose configuration says whether it needs payloads (`fn() -> bool`, may read
//! `tern_sdk::config`).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, FnArg, ItemFn, MetaNameValue, Token, Type};

/// The WIT package, embedded so the bindings generated in a plugin crate match the SDK's.
const WIT: &str = include_str!("../../../wit/tern-plugin.wit");
const WIT_PACKAGE_VERSION: &str = "0.2.0";

/// `#[tern_sdk::dedup_key] fn f(batch: &[Message], ..) -> Vec<Option<String>>`
#[proc_macro_attribute]
pub fn dedup_key(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Hook::DedupKey, attr.into(), item.into()).into()
}

/// `#[tern_sdk::route] fn f(batch: &[Message], ..) -> Vec<Routing>`
#[proc_macro_attribute]
pub fn route(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Hook::Route, attr.into(), item.into()).into()
}

/// `#[tern_sdk::residency] fn f(hop: &Hop, batch: &[Message], ..) -> Vec<Allowed>`
#[proc_macro_attribute]
pub fn residency(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Hook::Residency, attr.into(), item.into()).into()
}

/// `#[tern_sdk::resolve] fn f(batch: &[Conflict], ..) -> Vec<Winner>`
#[proc_macro_attribute]
pub fn resolve(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Hook::Resolve, attr.into(), item.into()).into()
}

#[derive(Clone, Copy, PartialEq)]
enum Hook {
    DedupKey,
    Route,
    Residency,
    Resolve,
}

impl Hook {
    fn wit_name(self) -> &'static str {
        match self {
            Hook::DedupKey => "dedup-key",
            Hook::Route => "route",
            Hook::Residency => "residency",
            Hook::Resolve => "resolve",
        }
    }

    fn snake(self) -> &'static str {
        match self {
            Hook::DedupKey => "dedup_key",
            Hook::Route => "route",
            Hook::Residency => "residency",
            Hook::Resolve => "resolve",
        }
    }
}

#[derive(Clone, Copy)]
enum Param {
    Batch,
    Payloads,
    Hop,
    Stream,
}

fn classify(hook: Hook, arg: &FnArg) -> syn::Result<Param> {
    let FnArg::Typed(pat) = arg else {
        return Err(syn::Error::new(
            arg.span(),
            "a hook function takes no `self`",
        ));
    };
    let unsupported = || {
        let hop = if hook == Hook::Residency {
            ", `&Hop`"
        } else {
            ""
        };
        let batch = if hook == Hook::Resolve {
            "`&[Conflict]`"
        } else {
            "`&[Message]`"
        };
        syn::Error::new(
            pat.ty.span(),
            format!(
                "unsupported parameter: a `{}` hook takes {batch} (the batch){hop}, \
                 `&Payloads` or `&str` (the stream)",
                hook.wit_name()
            ),
        )
    };
    let Type::Reference(reference) = &*pat.ty else {
        return Err(unsupported());
    };
    if reference.mutability.is_some() {
        return Err(unsupported());
    }
    match &*reference.elem {
        Type::Slice(_) => Ok(Param::Batch),
        Type::Path(path) => {
            let last = path.path.segments.last().map(|s| s.ident.to_string());
            match last.as_deref() {
                Some("Payloads") => Ok(Param::Payloads),
                Some("Hop") if hook == Hook::Residency => Ok(Param::Hop),
                Some("str") => Ok(Param::Stream),
                _ => Err(unsupported()),
            }
        }
        _ => Err(unsupported()),
    }
}

fn expand(hook: Hook, attr: TokenStream2, item: TokenStream2) -> TokenStream2 {
    match try_expand(hook, attr, item) {
        Ok(tokens) => tokens,
        Err(err) => err.to_compile_error(),
    }
}

fn try_expand(hook: Hook, attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let func: ItemFn = syn::parse2(item)?;
    let args = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(attr)?;
    let mut reads_payload_fn: Option<Expr> = None;
    for arg in args {
        if arg.path.is_ident("reads_payload") {
            reads_payload_fn = Some(arg.value);
        } else {
            return Err(syn::Error::new(
                arg.path.span(),
                "unknown argument: the only one is `reads_payload = path::to::fn`",
            ));
        }
    }

    let params: Vec<Param> = func
        .sig
        .inputs
        .iter()
        .map(|a| classify(hook, a))
        .collect::<syn::Result<_>>()?;
    let count = |want: fn(&Param) -> bool| params.iter().filter(|p| want(p)).count();
    if count(|p| matches!(p, Param::Batch)) != 1 {
        return Err(syn::Error::new(
            func.sig.span(),
            "a hook function takes the batch exactly once, as a slice (`&[Message]`)",
        ));
    }
    if count(|p| matches!(p, Param::Payloads)) > 1
        || count(|p| matches!(p, Param::Hop)) > 1
        || count(|p| matches!(p, Param::Stream)) > 1
    {
        return Err(syn::Error::new(
            func.sig.span(),
            "each parameter kind may appear once",
        ));
    }
    let takes_payloads = count(|p| matches!(p, Param::Payloads)) == 1;

    let user_fn = &func.sig.ident;
    let call_args = params.iter().map(|p| match p {
        Param::Batch => quote!(&batch),
        Param::Payloads => quote!(&payloads),
        Param::Hop => quote!(&hop),
        Param::Stream => quote!(stream.as_str()),
    });
    let sdk = quote!(::tern_sdk);
    let types = quote!(#sdk::__private::types);
    let glue = format_ident!("__tern_{}_glue", hook.snake());
    let info_fn = format_ident!("__tern_{}_info", hook.snake());

    // The glue decodes the batch in place (text borrows `raw`) and calls the function.
    let (glue_params, decode, result_ty) = match hook {
        Hook::DedupKey => (
            quote!(stream: String, raw: #types::Batch),
            quote!(#sdk::__private::messages(&raw)),
            quote!(Vec<Option<String>>),
        ),
        Hook::Route => (
            quote!(stream: String, raw: #types::Batch),
            quote!(#sdk::__private::messages(&raw)),
            quote!(Vec<#types::Routing>),
        ),
        Hook::Residency => (
            quote!(stream: String, hop: #types::Hop, raw: #types::Batch),
            quote!(#sdk::__private::messages(&raw)),
            quote!(Vec<#types::Allowed>),
        ),
        Hook::Resolve => (
            quote!(stream: String, raw: #types::Batch),
            quote!(#sdk::__private::conflicts(&raw)),
            quote!(Vec<#types::Winner>),
        ),
    };
    let hop_unused = if hook == Hook::Residency {
        quote!(let _ = &hop;)
    } else {
        quote!()
    };
    let reads_payload = match (&reads_payload_fn, takes_payloads) {
        (Some(f), true) => quote!((#f)()),
        (Some(f), false) => {
            return Err(syn::Error::new(
                f.span(),
                "`reads_payload` needs the function to take `&Payloads`",
            ))
        }
        (None, takes) => quote!(#takes),
    };

    let world = format!("tern:plugin/{}@{WIT_PACKAGE_VERSION}", hook.wit_name());
    let types_key = format!("tern:plugin/types@{WIT_PACKAGE_VERSION}");
    let host_key = format!("tern:plugin/host@{WIT_PACKAGE_VERSION}");
    let module = format_ident!("__tern_{}_export", hook.snake());
    let hook_mod = format_ident!("{}_hook", hook.snake());
    let export_fn = format_ident!("{}", hook.snake());
    let wasm_params = glue_params.clone();
    let wasm_args = match hook {
        Hook::Residency => quote!(stream, hop, raw),
        _ => quote!(stream, raw),
    };
    let wit = proc_macro2::Literal::string(WIT);
    let span = Span::call_site();
    let export_macro = syn::Ident::new("export", span);

    Ok(quote! {
        #func

        #[doc(hidden)]
        #[allow(dead_code, clippy::ptr_arg)]
        fn #glue(#glue_params) -> #result_ty {
            let (batch, payloads) = #decode;
            let _ = (&stream, &payloads);
            #hop_unused
            #user_fn(#(#call_args),*)
        }

        #[doc(hidden)]
        #[allow(dead_code)]
        fn #info_fn() -> #types::HookInfo {
            #sdk::__private::hook_info(#reads_payload)
        }

        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unsafe_code)]
        mod #module {
            #sdk::__private::wit_bindgen::generate!({
                inline: #wit,
                world: #world,
                runtime_path: "::tern_sdk::__private::wit_bindgen::rt",
                with: {
                    #types_key: ::tern_sdk::__private::types,
                    #host_key: ::tern_sdk::__private::host,
                },
            });

            struct Export;

            impl exports::tern::plugin::#hook_mod::Guest for Export {
                fn info() -> #types::HookInfo {
                    super::#info_fn()
                }

                fn #export_fn(#wasm_params) -> #result_ty {
                    super::#glue(#wasm_args)
                }
            }

            #export_macro!(Export with_types_in self);
        }
    })
}
