"""Prepare your own text files: the checkout's shortcut for `python -m nanogpt.data.prepare text`
(the command lives in the package, so an installed one has it too: `nanogpt-prepare text`)."""

from nanogpt.data.prepare.commands import checkout_shortcut

main = checkout_shortcut("text")

if __name__ == "__main__":
    main()
