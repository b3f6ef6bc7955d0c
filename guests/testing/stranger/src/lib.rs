//! Test-only: a valid WebAssembly component of another world, which edge
//! must refuse as a rule set.

wit_bindgen::generate!({
    inline: "
        package test:stranger;
        world stranger {
            export greet: func(name: string) -> string;
        }
    ",
});

struct Stranger;

impl Guest for Stranger {
    fn greet(name: String) -> String {
        format!("hello {name}")
    }
}

export!(Stranger);
