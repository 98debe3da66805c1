"""Character classes shared by the token estimate (`tokens`) and the prompt tools (`prompt/`), defined once."""

# Kana, CJK ideographs and Hangul: scripts written without spaces, where every character is a unit.
CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"

# Latin-script word edges, so a term matches only as whole words: not inside "cats" or "redwood".
# A plain class, not \b: fast under IGNORECASE.
LATIN_WORD_START = r"(?<![0-9A-Za-z_\u00c0-\u024f])"
LATIN_WORD_END = r"(?![0-9A-Za-z_\u00c0-\u024f])"
