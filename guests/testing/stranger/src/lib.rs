//! Test-only: a valid WebAssembly component of another world, which edge
//! must refuse as a rule set.

mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
    inline: "
        package test:stranger;
        world stranger {
            export greet: func(name: string) -> string;
        }
    ",
    });
}

struct Stranger;

impl bindings::Guest for Stranger {
    fn greet(name: String) -> String {
        format!("hello {name}")
    }
}

bindings::export!(Stranger with_types_in bindings);
