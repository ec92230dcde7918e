/* tok_weak.h: TEMPORARY (lead): weak references to the tokenizer so users link before the
 * tokenizer module lands. Only reached when a model has a tokenizer (which needs the module). */
#pragma weak tl_tokenizer_encode
#pragma weak tl_chat_render
#pragma weak tl_tokenizer_add_bos
#pragma weak tl_tokenizer_bos
#pragma weak tl_detok_new
#pragma weak tl_detok_push
#pragma weak tl_detok_flush
#pragma weak tl_detok_free
