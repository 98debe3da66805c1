// WanLean frontend entry. Feature files register their own extensions; this one only names the pack.
import { app } from "../../scripts/app.js";

app.registerExtension({ name: "wanlean.core" });
