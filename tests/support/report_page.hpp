// A report page (or one chart's SVG) read with libxml2, asked with XPath: `h:` is XHTML, `s:` SVG.
// Parsing it at all proves it well-formed XML; a file that is not fails the test that reads it.
#pragma once

#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include <cstring>
#include <string>
#include <vector>

namespace sockhist::test {

class Page {
 public:
  explicit Page(const std::string& path)
      : doc_(xmlReadFile(path.c_str(), nullptr, XML_PARSE_NONET | XML_PARSE_NOENT | XML_PARSE_HUGE)) {
    if (doc_ == nullptr) {
      ADD_FAILURE() << path << " is not well-formed XML";
      return;
    }
    context_ = xmlXPathNewContext(doc_);
    xmlXPathRegisterNs(context_, x("h"), x("http://www.w3.org/1999/xhtml"));
    xmlXPathRegisterNs(context_, x("s"), x("http://www.w3.org/2000/svg"));
  }
  ~Page() {
    if (context_ != nullptr) {
      xmlXPathFreeContext(context_);
    }
    if (doc_ != nullptr) {
      xmlFreeDoc(doc_);
    }
  }
  Page(const Page&) = delete;
  Page& operator=(const Page&) = delete;

  // The text of each node matched: a table row's cells joined by " | ", else its text content.
  std::vector<std::string> strings(const std::string& xpath) const {
    std::vector<std::string> out;
    each(xpath, [&](xmlNodePtr node) { out.push_back(text(node)); });
    return out;
  }
  std::string string(const std::string& xpath) const {
    const auto all = strings(xpath);
    return all.empty() ? std::string() : all.front();
  }
  long count(const std::string& xpath) const {
    long n = 0;
    each(xpath, [&](xmlNodePtr) { ++n; });
    return n;
  }
  // The points series `name` draws in the chart at `chart`: path vertices and lone dots.
  long points(const std::string& chart, const std::string& name) const {
    long n = 0;
    each(chart + "//s:g[@class='series']", [&](xmlNodePtr g) {
      if (attribute(g, "data-series") != name) {
        return;
      }
      for (xmlNodePtr c = g->children; c != nullptr; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) {
          continue;
        }
        if (std::strcmp(reinterpret_cast<const char*>(c->name), "circle") == 0) {
          ++n;
        } else if (std::strcmp(reinterpret_cast<const char*>(c->name), "path") == 0) {
          const auto d = attribute(c, "d");
          n += static_cast<long>(std::count(d.begin(), d.end(), 'M') + std::count(d.begin(), d.end(), 'L'));
        }
      }
    });
    return n;
  }

 private:
  static const xmlChar* x(const char* text) { return reinterpret_cast<const xmlChar*>(text); }

  template <typename F>
  void each(const std::string& xpath, F&& f) const {
    if (context_ == nullptr) {
      return;
    }
    xmlXPathObjectPtr result = xmlXPathEvalExpression(x(xpath.c_str()), context_);
    if (result == nullptr) {
      ADD_FAILURE() << "bad XPath " << xpath;
      return;
    }
    if (result->nodesetval != nullptr) {
      for (int i = 0; i < result->nodesetval->nodeNr; ++i) {
        f(result->nodesetval->nodeTab[i]);
      }
    }
    xmlXPathFreeObject(result);
  }
  static std::string attribute(xmlNodePtr node, const char* name) {
    xmlChar* v = xmlGetProp(node, x(name));
    std::string out = v != nullptr ? reinterpret_cast<const char*>(v) : "";
    xmlFree(v);
    return out;
  }
  static std::string content(xmlNodePtr node) {
    xmlChar* v = xmlNodeGetContent(node);
    std::string out = v != nullptr ? reinterpret_cast<const char*>(v) : "";
    xmlFree(v);
    return out;
  }
  static std::string text(xmlNodePtr node) {
    if (node->type == XML_ELEMENT_NODE && std::strcmp(reinterpret_cast<const char*>(node->name), "tr") == 0) {
      std::string out;
      for (xmlNodePtr c = node->children; c != nullptr; c = c->next) {
        if (c->type == XML_ELEMENT_NODE) {
          out += (out.empty() ? "" : " | ") + content(c);
        }
      }
      return out;
    }
    return content(node);
  }

  xmlDocPtr doc_ = nullptr;
  xmlXPathContextPtr context_ = nullptr;
};

}  // namespace sockhist::test
